#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every gate: ruff lint, ruff format, mypy --strict on src/,
# and the whole pytest suite with warnings as errors and a coverage report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check";          ruff check src tests benchmarks
echo "== ruff format --check"; ruff format --check src tests benchmarks
echo "== mypy --strict src/";  mypy --strict src/
echo "== pcifleet host scan (this machine's real /sys)"
pcifleet host scan --json > /tmp/pcifleet-host-scan.json
python -c "import json; d = json.load(open('/tmp/pcifleet-host-scan.json')); print(len(d['functions']), 'PCI functions listed')"
echo "== pytest -W error";     pytest -W error --cov=pcifleet --cov-report=term "$@"
