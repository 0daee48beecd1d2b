#!/usr/bin/env bash
# The peers' own virtual environment: fastai 2.8.12 with the torch and torchvision pip resolves for it (several
# GB, about 2 minutes). It is never a dependency of digitlab, and digitlab is not installed in it.
# Usage: bash benchmarks/peers/setup.sh   (from anywhere; PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
FASTAI_VERSION="${FASTAI_VERSION:-2.8.12}"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import fastai, sys; sys.exit(fastai.__version__ != '$FASTAI_VERSION')" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "fastai==$FASTAI_VERSION"
fi
"$venv/bin/python" -c "import fastai, torch, torchvision; print('fastai', fastai.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)"
