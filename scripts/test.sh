#!/usr/bin/env bash
# Install bafenet with its dev tools, lint (ruff check, ruff format --check) and run the whole
# test suite; arguments go to pytest. Every step runs; the script fails if any of them fails.
# pytest's exit code 5 ("no tests collected") is turned into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]" || exit 1
status=0
python -m ruff check . || status=1
python -m ruff format --check . || status=1
python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  rc=1
fi
if [ "$rc" -ne 0 ]; then
  status=$rc
fi
exit "$status"
