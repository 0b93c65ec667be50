"""Tables, engines, migrations and row access for the data database and the key store."""
