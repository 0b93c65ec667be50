"""Who calls and what they may do: principals, roles, permissions."""
