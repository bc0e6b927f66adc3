#!/usr/bin/env bash
# The README's test command: provision what the tests need, then run the suite.
#
#   bash scripts/test.sh [pytest args...]
#
# 1. Sources every .ci/setup.d/*.sh in name order (PostgreSQL server binaries, Chromium, ...). Each one is
#    idempotent: it installs nothing when its package is already there, so a provisioned machine needs no
#    root. Where something is missing it runs apt-get (Debian/Ubuntu), as root directly, else through sudo.
# 2. Lints and type-checks (rules in pyproject.toml): `ruff check`, `ruff format --check` and `mypy`; the
#    first finding stops the script (non-zero status).
# 3. Runs `python -m pytest -q` with any extra arguments, and exits with pytest's status (non-zero when a
#    test fails).
# Run it inside the environment where `pip install -e ".[test]"` was run (the README's install command).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  apt-get() {
    if command -v sudo >/dev/null 2>&1; then
      sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
      echo "scripts/test.sh: a system package is missing and installing it needs root (apt-get $*); run this" \
           "script as root or install sudo" >&2
      return 1
    fi
  }
fi

for f in .ci/setup.d/*.sh; do
  [ -e "$f" ] || continue
  echo "== $f" >&2
  # shellcheck disable=SC1090
  . "$f"
done

echo "== ruff, mypy" >&2
python -m ruff check prunebench tests benchmarks scripts
python -m ruff format --check prunebench tests benchmarks scripts
python -m mypy

exec python -m pytest -q "$@"
