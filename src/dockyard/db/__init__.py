"""Metadata database: engine, sessions, migrations. The DB is the source of truth."""
