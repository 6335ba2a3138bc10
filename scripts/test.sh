#!/usr/bin/env bash
# One command for the whole test suite: sets up the environment (with test tools) and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest -q "$@"
