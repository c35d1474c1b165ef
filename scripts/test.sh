#!/usr/bin/env bash
# Install bafenet with its dev tools and run the whole test suite.
# pytest's exit code 5 ("no tests collected") is turned into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[dev]" || exit 1
python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
