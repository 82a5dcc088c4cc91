#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k segmenter`. Skipped tests are listed with
# their reasons (-rs).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
. .venv/bin/activate
python -m pytest -q -rs -p no:cacheprovider --durations=15 "$@"
rc=$?
# pytest exits 5 when it collected no test (e.g. a -k that matches nothing): not a failure.
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests (exit 5)"
    exit 0
fi
exit "$rc"
