# The README's two commands: `make demo` (main job on built-in defaults) and `make test` (whole suite).
# Both create the virtual environment and install everything they need on a fresh machine.
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

.PHONY: test demo install system-deps lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test,weights]'
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

test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(VENV)/bin/nctransfer demo

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
