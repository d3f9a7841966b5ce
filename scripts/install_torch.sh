#!/usr/bin/env bash
# Install torch into the given Python environment without ever pulling CUDA packages on a CPU-only
# machine, and without replacing a torch the user already has (e.g. their own CUDA build).
#   scripts/install_torch.sh PYTHON
# Environment knobs: TORCH_SPEC (default torch==2.13.0), TORCH_PIP_ARGS (extra pip arguments, e.g. an
# --index-url of a CPU-only wheel index on machines without a local CPU wheel).
set -euo pipefail
py=${1:?usage: install_torch.sh PYTHON}
spec=${TORCH_SPEC:-torch==2.13.0}
if "$py" -c "import torch" 2>/dev/null; then
  echo "[install_torch] keeping installed $("$py" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "[install_torch] GPU found: installing $spec (CUDA build)"
  "$py" -m pip install ${TORCH_PIP_ARGS:-} "$spec"
else
  echo "[install_torch] no GPU: installing the CPU build of $spec"
  # A CPU wheel never depends on nvidia-* packages: finding one afterwards means a CUDA wheel slipped in.
  "$py" -m pip install ${TORCH_PIP_ARGS:-} "$spec"
  if "$py" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "[install_torch] ERROR: CUDA packages were pulled on a CPU-only machine; set TORCH_PIP_ARGS to a CPU wheel index" >&2
    exit 1
  fi
fi
