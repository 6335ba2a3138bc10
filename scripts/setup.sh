#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment: idempotent, safe to run again.
#   bash scripts/setup.sh          runtime dependencies (what the app needs)
#   bash scripts/setup.sh --dev    plus the test tools and Debian's chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt

if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
echo "Installing $requirements into .venv (the first time takes a few minutes)..."
# This workplace's pip config names local mirrors that may be absent; pip warns once per package.
.venv/bin/python -m pip install --disable-pip-version-check -q -r "$requirements" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; }

if [ "${1:-}" = "--dev" ] && [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's chromium for the browser tests..."
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium > /dev/null
fi
echo "Environment ready: .venv"
