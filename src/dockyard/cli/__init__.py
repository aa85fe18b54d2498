"""Command line: serve, worker, config, db, cert, backup/restore/verify, move, read-only, garbage-collect,
and the management commands (user, project, robot, ...), which talk to /api/v1 only."""
