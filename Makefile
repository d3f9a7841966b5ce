# pointformer — every target installs what it needs into .venv (idempotent: a second run is fast).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# e.g. VENV_FLAGS=--system-site-packages inside an activated conda env: .venv then sees (and keeps) its CUDA torch
VENV_FLAGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pointformer-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Threads for torch on small machines (CI has 2 cores).
export OMP_NUM_THREADS ?= 2
# Sleeping (not spinning) OpenMP workers: on a machine shared with other processes, spinning threads made
# a 2-thread backbone step 5-50x slower (measured; see docs/sparse.md).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test test-all test-minkowski demo minkowski bench convergence convergence-gpu system-deps clean

# apt packages for optional features (Open3D import needs libusb; rendering needs EGL / Vulkan;
# MinkowskiEngine needs OpenBLAS). Installed only when running as root with apt; listed in README.
APT_PACKAGES := libusb-1.0-0 libgl1 libegl1 libgomp1 libvulkan1 mesa-vulkan-drivers libopenblas-dev
system-deps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "[system-deps] apt-get install $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "[system-deps] WARNING: apt install failed; optional features (rendering, minkowski) may be unavailable"; fi; \
	else echo "[system-deps] not root: install yourself if needed: $(APT_PACKAGES)"; fi

$(STAMP): setup.py scripts/install_torch.sh
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	scripts/install_torch.sh $(PY)
	$(PY) -m pip install -q -e '.[dev,vis]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import pointformer, torch; print('[install] pointformer', pointformer.__version__, 'torch', torch.__version__)"
	@touch $@

install: $(STAMP)

# pytest exits 5 when a marker selects no test (e.g. no MinkowskiEngine): that is not a failure here.
PYTEST = $(PY) -m pytest -q
test: $(STAMP)
	$(PY) -m ruff check .
	$(PYTEST) tests || [ $$? = 5 ]

test-all: $(STAMP)
	$(PYTEST) -m "slow or not slow" tests || [ $$? = 5 ]

demo: $(STAMP)
	$(VENV)/bin/pointformer demo

bench: $(STAMP)
	$(PY) benchmarks/sparse_conv.py

# Influencer Loss vs Hungarian matching (docs/convergence.md): the CPU study (~45 min) and the GPU setting.
convergence: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/convergence.py --jobs 2 --threads 1

convergence-gpu: $(STAMP)
	$(PY) benchmarks/convergence.py --full --device cuda --out benchmarks/results/convergence/full

minkowski: $(STAMP)
	scripts/build_minkowski.sh $(PY)

test-minkowski: $(STAMP)
	$(PYTEST) -m minkowski tests || [ $$? = 5 ]

clean:
	rm -rf $(VENV) build *.egg-info
