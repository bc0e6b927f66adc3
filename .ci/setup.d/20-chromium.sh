# Chromium (Debian's `chromium` package) for tests/test_reports.py: it loads a generated index.html headless.
# Sourced by .ci/run; idempotent; root on a fresh Debian 12.
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
fi
