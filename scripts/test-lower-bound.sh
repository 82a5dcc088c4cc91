#!/usr/bin/env bash
# Second CI job: the backbone KV-cache contract (tests/test_cache_compat.py, tests/test_adapters.py)
# on the OLDEST transformers that pyproject.toml admits, next to the newest one `make test` uses.
# transformers renamed the cache keyword (past_key_values -> cache); a keyword the installed
# release no longer knows could be swallowed by **kwargs and generation would run uncached, so
# both ends of the admitted range are tested. The old release goes into .venv/lower-bound (no
# second torch): only transformers and the two packages whose newest releases it cannot import.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
LOW="$(python - <<'PY'
import re, pathlib
text = pathlib.Path("pyproject.toml").read_text()
print(re.search(r'"transformers>=([0-9.]+)"', text).group(1))
PY
)"
TARGET=.venv/lower-bound
if ! PYTHONPATH="$TARGET" python -c "import sys, transformers; from packaging.version import Version; sys.exit(Version(transformers.__version__) != Version('$LOW'))" 2>/dev/null; then
    rm -rf "$TARGET"
    # transformers 4.46-4.47 import only tokenizers 0.20.x and huggingface_hub < 1.0
    python -m pip install -q --no-deps --target "$TARGET" "transformers==$LOW" "tokenizers>=0.20,<0.21" "huggingface_hub>=0.24,<1.0"
fi
PYTHONPATH="$TARGET" python -c "import transformers; print('lower-bound job: transformers', transformers.__version__)"
PYTHONPATH="$TARGET" python -m pytest -q -p no:cacheprovider tests/test_cache_compat.py tests/test_adapters.py
