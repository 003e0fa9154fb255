#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job: the pcifleet demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pcifleet demo "$@"
