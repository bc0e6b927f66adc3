# PostgreSQL server binaries for tests/test_studies_postgres.py (multi-worker Optuna sweeps).
# The test starts and stops its own server on 127.0.0.1 (as user postgres when run as root); this script
# only makes sure Debian's packages are installed. Idempotent; sourced by .ci/run as root.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || {
  echo "10-postgres.sh: PostgreSQL could not be installed" >&2; return 1 2>/dev/null || exit 1; }
getent passwd postgres >/dev/null || { echo "10-postgres.sh: no postgres user after install" >&2; return 1 2>/dev/null || exit 1; }
