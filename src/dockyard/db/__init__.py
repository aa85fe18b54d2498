"""Metadata database: engine, sessions, migrations, the runtime read-only switch. The DB is the source
of truth."""
