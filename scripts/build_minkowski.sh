#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 from its PyPI sdist against the torch already installed in PYTHON's
# environment, install it there, and cache the built wheel so a second run takes seconds.
#   scripts/build_minkowski.sh PYTHON
# Environment knobs:
#   ME_WHEEL_CACHE  folder for the built wheel (default: <repo>/.cache/wheels, gitignored)
#   ME_FORCE_BUILD  =1 rebuilds even when a cached wheel exists
#   MAX_JOBS        parallel compile jobs (default: number of cores)
#   ME_CPU_ONLY     =1 builds without CUDA even when torch sees a GPU (the CUDA build of 0.5.4 needs
#                   nvcc and is untested here)
# Why each step (see docs/sparse.md):
#   - libopenblas-dev: ME links a CBLAS; numpy>=2 has no numpy.distutils to discover one, so the
#     BLAS is named explicitly (--blas=openblas).
#   - SETUPTOOLS_USE_DISTUTILS=stdlib + --no-build-isolation: ME's setup.py imports torch, so the
#     build must see the environment's own torch (an isolated build would download another one).
#   - CPU_ONLY when torch sees no CUDA device.
#   - Python >= 3.10 removed collections.Sequence; five ME modules import it from there.
#   - --no-deps everywhere: this script never installs or replaces torch.
set -euo pipefail
py=${1:?usage: build_minkowski.sh PYTHON}
here=$(cd "$(dirname "$0")/.." && pwd)
version=0.5.4
cache=${ME_WHEEL_CACHE:-$here/.cache/wheels}
t0=$(date +%s)

log() { echo "[minkowski] $*"; }

if ! "$py" -c "import torch" 2>/dev/null; then
  echo "[minkowski] ERROR: torch is not importable from $py; run 'make install' first" >&2
  exit 1
fi
torch_version=$("$py" -c "import torch; print(torch.__version__)")
py_tag=$("$py" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
cuda=$("$py" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
[ "${ME_CPU_ONLY:-0}" = 1 ] && cuda=cpu
# The wheel is only valid for the torch (ABI) and device flavour it was compiled against.
tag="torch${torch_version//+/_}-$cuda-$py_tag"
wheel_dir="$cache/minkowskiengine-$version-$tag"

if "$py" -c "import MinkowskiEngine as ME, sys; sys.exit(0 if ME.__version__ == '$version' else 1)" 2>/dev/null \
   && [ "${ME_FORCE_BUILD:-0}" != 1 ]; then
  log "MinkowskiEngine $version already importable; nothing to do"
  exit 0
fi

# System BLAS (root + apt only; otherwise the user must have it).
if ! ldconfig -p 2>/dev/null | grep -q 'libopenblas\.so\b' && [ ! -e /usr/include/x86_64-linux-gnu/cblas.h ] \
   && [ ! -e /usr/include/cblas.h ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "apt-get install libopenblas-dev"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev >/dev/null
  else
    echo "[minkowski] ERROR: OpenBLAS headers not found; install libopenblas-dev (apt) and rerun" >&2
    exit 1
  fi
fi

shopt -s nullglob
cached=("$wheel_dir"/[Mm]inkowski[Ee]ngine-*.whl)
if [ ${#cached[@]} -eq 0 ] || [ "${ME_FORCE_BUILD:-0}" = 1 ]; then
  # The build folder is kept when a step fails, so a rerun reuses the compiled objects (ninja).
  work="$cache/minkowskiengine-$version-build"
  mkdir -p "$work"
  log "downloading the MinkowskiEngine==$version sdist"
  # Metadata preparation imports torch, hence --no-build-isolation here as well.
  [ -f "$work/MinkowskiEngine-$version.tar.gz" ] || SETUPTOOLS_USE_DISTUTILS=stdlib "$py" -m pip download -q \
    --no-deps --no-binary :all: --no-build-isolation -d "$work" "MinkowskiEngine==$version"
  src="$work/MinkowskiEngine-$version"
  [ -d "$src" ] || tar -xzf "$work/MinkowskiEngine-$version.tar.gz" -C "$work"
  log "patching collections.Sequence -> collections.abc.Sequence"
  grep -rl --include='*.py' 'from collections import' "$src/MinkowskiEngine" | while read -r f; do
    sed -i -E 's/^from collections import Sequence, namedtuple$/from collections import namedtuple\nfrom collections.abc import Sequence/; s/^from collections import Sequence$/from collections.abc import Sequence/' "$f"
  done
  if grep -rn --include='*.py' -E '^from collections import .*\bSequence\b' "$src/MinkowskiEngine"; then
    echo "[minkowski] ERROR: collections.Sequence import left unpatched (see above)" >&2
    exit 1
  fi
  build_opts=(--config-settings=--build-option=--blas=openblas)
  if [ "$cuda" = cpu ]; then
    build_opts+=(--config-settings=--build-option=--cpu_only)
    log "CPU_ONLY build (no CUDA device visible to torch, or ME_CPU_ONLY=1)"
  fi
  export MAX_JOBS=${MAX_JOBS:-$(nproc)}
  log "compiling against torch $torch_version with MAX_JOBS=$MAX_JOBS (several minutes on 2 cores)"
  tb=$(date +%s)
  SETUPTOOLS_USE_DISTUTILS=stdlib "$py" -m pip wheel -q --no-deps --no-build-isolation \
    "${build_opts[@]}" -w "$work/dist" "$src"
  log "compile time: $(( $(date +%s) - tb )) s"
  mkdir -p "$wheel_dir"
  # Atomic publication of the cached wheel: copy under a temporary name, then rename.
  # setuptools may spell the wheel name in lower case
  built=("$work"/dist/[Mm]inkowski[Ee]ngine-*.whl)
  if [ ${#built[@]} -eq 0 ]; then
    echo "[minkowski] ERROR: pip wheel produced no MinkowskiEngine wheel in $work/dist" >&2
    exit 1
  fi
  for w in "${built[@]}"; do
    cp "$w" "$wheel_dir/.tmp.$(basename "$w")"
    mv "$wheel_dir/.tmp.$(basename "$w")" "$wheel_dir/$(basename "$w")"
  done
  cached=("$wheel_dir"/[Mm]inkowski[Ee]ngine-*.whl)
  rm -rf "$work"
else
  log "using cached wheel ${cached[0]}"
fi

"$py" -m pip install -q --no-deps --force-reinstall "${cached[0]}"
"$py" -c "import MinkowskiEngine as ME, torch; print('[minkowski] import OK: MinkowskiEngine', ME.__version__, 'torch', torch.__version__)"
log "total time: $(( $(date +%s) - t0 )) s"
