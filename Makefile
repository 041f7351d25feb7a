# The README's two commands: `make demo` (main job on built-in defaults) and `make test` (whole suite).
# Both create the virtual environment and install everything they need on a fresh machine.
# `make docs` builds the documentation site (strict: a broken link fails); `make wheel-smoke` builds the wheel and
# sdist and tries the wheel in fresh virtual environments (core only, then with PyTorch); `make test` runs both.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nctransfer-installed
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif
PYTEST_ARGS ?=
# extras installed for development: everything (torch, report, hf, ray, weights) + docs + test
DEV_EXTRAS := all,docs,test
SMOKE := build/smoke

.PHONY: test demo install system-deps lint docs wheel wheel-smoke bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[$(DEV_EXTRAS)]'
	touch $(STAMP)

install: $(STAMP) system-deps

# Debian packages: Fashion-MNIST's IDX files and a headless browser for the report test (root only).
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; \
	  dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing="$$missing dataset-fashion-mnist"; \
	  dpkg -s chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || echo "warning: could not install$$missing; tests needing them will be skipped"; \
	  fi; \
	else echo "not root: skipping apt packages (Fashion-MNIST falls back to digits)"; fi

lint: $(STAMP)
	$(VENV)/bin/lint-imports

# the documentation site -> build/site (mkdocs.yml); --strict turns every warning (broken link, bad reference) into an error
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

# wheel and sdist -> dist
wheel: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist . >/dev/null

# the wheel in a fresh venv with the core dependencies only (from PyPI, pip's cache reused), then in a fresh venv
# that sees this venv's PyTorch (installed --no-deps, so nothing large is downloaded twice); run outside the tree
wheel-smoke: wheel
	rm -rf $(SMOKE) && mkdir -p $(SMOKE)
	python3 -m venv $(SMOKE)/core
	$(SMOKE)/core/bin/python -m pip install -q dist/nctransfer-*.whl
	cd $(SMOKE) && core/bin/python $(CURDIR)/.ci/smoke_core.py
	python3 -m venv $(SMOKE)/torch
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
	  > "$$($(SMOKE)/torch/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/dev-venv.pth"
	$(SMOKE)/torch/bin/python -m pip install -q --no-deps dist/nctransfer-*.whl
	cd $(SMOKE) && torch/bin/python $(CURDIR)/.ci/smoke_torch.py

test: install lint docs wheel-smoke
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/nctransfer demo

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build dist
