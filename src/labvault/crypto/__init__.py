"""Key providers, envelope sealing and blind indexes: the only users of `cryptography`."""
