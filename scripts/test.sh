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
echo "== pytest -W error";     pytest -W error --cov=pcifleet --cov-report=term "$@"
