"""Background jobs: a queue of rows in the metadata DB, claimed atomically by workers on any node."""
