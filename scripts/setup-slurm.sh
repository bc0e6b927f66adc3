# Slurm (Debian's slurm-wlm) and munge for tests/test_executors.py: the test starts a single-node cluster
# with scripts/slurm_local.sh and stops it after. This script only makes sure the packages are installed.
# Idempotent; run it as root (or source it) before `python -m pytest -m engines tests/test_executors.py`: the
# engine tests are not in the default run until verified on the CI machine (issue 20).
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi
command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || {
  echo "setup-slurm.sh: slurm-wlm/munge could not be installed" >&2; return 1 2>/dev/null || exit 1; }
