#!/bin/bash
# Runs once, when the primary's data directory is first initialised (docker-entrypoint-initdb.d):
# a role the replica streams with, and the pg_hba line that lets it (the image's "host all all all"
# line does not cover replication connections).
set -euo pipefail
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 -v pw="$REPLICATION_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
