"""Who calls and what they may do: principals, roles, permissions, and the pieces of named
accounts (argon2id passwords, TOTP, login throttling)."""
