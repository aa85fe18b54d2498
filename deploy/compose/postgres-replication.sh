#!/bin/bash
# Runs once, when the primary's data directory is created (/docker-entrypoint-initdb.d, in
# deploy/docker-compose.yml): a role for the replica, allowed in for replication.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
  -c "CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD 'replicator-password'"
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
