# `make test` and `make demo` work on a fresh Debian 12 machine, as root.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages the tests use (busybox-static builds the 2 MB test image).
APT_PACKAGES := busybox-static iproute2 nftables libseccomp2 crun runc tini docker-registry apache2-utils mmdebstrap debootstrap iperf3 dnsperf

.PHONY: test unit integration e2e lint demo bench deps venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode: a plain path entry; the default import hook costs ~10 ms a start.
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	# Nothing runs setuptools (pip builds in an isolated env), but its .pth file imports
	# a module in every interpreter start: ~0.5 ms of each composer, runtime and shim.
	$(PY) -m pip uninstall -q -y setuptools
	# Bytecode up front: where PYTHONDONTWRITEBYTECODE is set, every start would recompile.
	$(PY) -m compileall -q composer runtime
	touch $@

venv: $(STAMP)

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check composer runtime tests bench
	$(VENV)/bin/ruff format --check composer runtime tests bench

# pytest exits 5 when it collects nothing; make treats that as a failure too.
test: deps $(STAMP) lint
	$(PY) -m pytest tests

unit: $(STAMP)
	$(PY) -m pytest -m unit tests

integration: deps $(STAMP)
	$(PY) -m pytest -m integration tests

e2e: deps $(STAMP)
	$(PY) -m pytest -m e2e tests

demo: deps $(STAMP)
	./samples/flask-redis/demo.sh

bench: deps $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
