#!/usr/bin/env bash
# One command from a fresh clone: install, build (or refresh) the index of the collection, serve the app
# on http://127.0.0.1:7860.  Collection: $XRAY_COLLECTION, else ../shared/xray-collection.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py --collection "${XRAY_COLLECTION:-../shared/xray-collection}" "$@"
