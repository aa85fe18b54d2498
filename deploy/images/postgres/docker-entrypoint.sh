#!/bin/sh
# `postgres ...`: on an empty $PGDATA first create the cluster (superuser $POSTGRES_USER with
# $POSTGRES_PASSWORD, database $POSTGRES_DB, password logins over TCP), run
# /docker-entrypoint-initdb.d/*.sh and *.sql once, then start the server listening on every address.
# Any other command runs as given (the compose file's replica runs pg_basebackup first).
set -eu
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  password_file="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
  initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  # Only the socket while initialising: nothing connects before the scripts are done.
  pg_ctl --wait --options="-c listen_addresses=''" start
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" --dbname=postgres \
      --command="CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) echo "running $script"; bash "$script" ;;
      *.sql) echo "running $script"; psql -v ON_ERROR_STOP=1 --username="$POSTGRES_USER" \
               --dbname="$POSTGRES_DB" --file="$script" ;;
    esac
  done
  pg_ctl --wait --mode=fast stop
fi
exec "$@"
