#!/usr/bin/env bash
# Create a separate virtual environment with MACE (mace-torch) for the small-data study
# (docs/small_data_study.md). MACE is not a dependency of eqv2; this venv is only for
# benchmarks/mace/train_mace.py.
#
#   bash benchmarks/mace/setup.sh VENV_DIR        # e.g. ../macevenv (outside the repository)
#
# torch is installed first and pinned, as the Makefile does for eqv2, so pip never pulls a
# multi-GB CUDA build on its own and both models run on the same torch.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash benchmarks/mace/setup.sh VENV_DIR (where to create the MACE environment)" >&2
    exit 2
fi
VENV="$1"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
MACE_SPEC="${MACE_SPEC:-mace-torch==0.3.16}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
"$VENV/bin/python" -m pip install --quiet "$MACE_SPEC"
"$VENV/bin/python" -c "import torch, mace; from mace import __version__ as v; print('torch', torch.__version__, 'mace', v)"
