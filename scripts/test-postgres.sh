#!/usr/bin/env bash
# Runs a command (default: cargo test --locked) with a PostgreSQL server for
# the PostgreSQL tests, whose URL it exports as FERRY_TEST_POSTGRES_URL.
#
#   scripts/test-postgres.sh                      # cargo test --locked
#   scripts/test-postgres.sh cargo test postgres  # any command
#
# When FERRY_TEST_POSTGRES_URL is already set (a server on a developer's
# machine, as a superuser or a role with CREATEDB), the command runs against
# it. Otherwise the script starts a throwaway server: initdb into a
# temporary directory, listening on 127.0.0.1 only, on a free port, with
# password authentication and TLS (a self-signed CA whose certificate it
# exports as FERRY_TEST_POSTGRES_CA). The server and its files are removed
# when the command ends, whatever its outcome.
#
# PostgreSQL's binaries are looked up in PG_BIN, then in
# /usr/lib/postgresql/<version>/bin (newest first), then on PATH. initdb
# refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
  set -- cargo test --locked
fi

if [ -n "${FERRY_TEST_POSTGRES_URL:-}" ]; then
  echo "test-postgres: using the server in FERRY_TEST_POSTGRES_URL"
  exec "$@"
fi

find_bin() {
  if [ -n "${PG_BIN:-}" ] && [ -x "${PG_BIN}/initdb" ]; then
    echo "${PG_BIN}"
    return
  fi
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -rn); do
    if [ -x "${dir}/initdb" ]; then
      echo "${dir}"
      return
    fi
  done
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

BIN="$(find_bin)"
if [ -z "${BIN}" ]; then
  cat >&2 <<'EOF'
test-postgres: PostgreSQL is not installed (no initdb in PG_BIN, /usr/lib/postgresql/*/bin or PATH).
Install it (Debian/Ubuntu: apt-get install postgresql-15), or point
FERRY_TEST_POSTGRES_URL at a server where the URL's role may create databases:
  FERRY_TEST_POSTGRES_URL=postgres://me:secret@127.0.0.1:5432/postgres scripts/test-postgres.sh
EOF
  exit 1
fi

# As root, files and processes belong to the postgres user.
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    echo "test-postgres: running as root needs a 'postgres' user to run the server as" >&2
    exit 1
  fi
  as_server() { runuser -u postgres -- "$@"; }
else
  as_server() { "$@"; }
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/ferry-postgres.XXXXXX")"
chmod 700 "${DIR}"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "${DIR}"; fi

stop_server() {
  if [ -f "${DIR}/data/postmaster.pid" ]; then
    as_server "${BIN}/pg_ctl" -D "${DIR}/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "${DIR}"
}
trap stop_server EXIT

USER_NAME=ferry_test
PASSWORD="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
echo "${PASSWORD}" >"${DIR}/password"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "${DIR}/password"; fi

as_server "${BIN}/initdb" -D "${DIR}/data" -U "${USER_NAME}" --pwfile="${DIR}/password" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"${DIR}/initdb.log" 2>&1 \
  || { cat "${DIR}/initdb.log" >&2; exit 1; }

# TLS: a CA, and a server certificate for localhost and 127.0.0.1 signed by it.
if command -v openssl >/dev/null 2>&1; then
  (
    cd "${DIR}"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry test CA" \
      -keyout ca.key -out ca.crt >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt >/dev/null 2>&1
    chmod 600 server.key
  )
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "${DIR}/server.key" "${DIR}/server.crt"; fi
  cat >>"${DIR}/data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '${DIR}/server.crt'
ssl_key_file = '${DIR}/server.key'
EOF
  export FERRY_TEST_POSTGRES_CA="${DIR}/ca.crt"
else
  echo "test-postgres: openssl not found; the server runs without TLS and the TLS tests are skipped"
fi

# A throwaway server needs no durability.
cat >>"${DIR}/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '${DIR}'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

started=""
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + RANDOM % 40000))
  if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    continue
  fi
  if as_server "${BIN}/pg_ctl" -D "${DIR}/data" -o "-p ${PORT}" -l "${DIR}/server.log" -w -t 30 start >/dev/null; then
    started=yes
    break
  fi
done
if [ -z "${started}" ]; then
  echo "test-postgres: the server did not start; its log:" >&2
  cat "${DIR}/server.log" >&2 || true
  exit 1
fi

export FERRY_TEST_POSTGRES_URL="postgres://${USER_NAME}:${PASSWORD}@127.0.0.1:${PORT}/postgres"
echo "test-postgres: PostgreSQL $("${BIN}/postgres" --version | awk '{print $3}') on 127.0.0.1:${PORT}"

# Not exec: the EXIT trap stops the server afterwards.
"$@"
