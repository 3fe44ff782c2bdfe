# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_FLAGS := --disable-pip-version-check -q

.PHONY: demo test lint typecheck bench clean ebpf-tools

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip setuptools wheel

# The install builds the sensor's optional C hook: a change to its source reinstalls.
$(VENV)/.demo-installed: pyproject.toml agentguard/sensors/_fasthook.c | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml agentguard/sensors/_fasthook.c | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/agentguard demo

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check agentguard integrations collector tests bench examples

# mypy cannot follow the package-dir mapping of an editable install, so it checks a symlink view
# of the assembled package under build/typecheck.
typecheck: $(VENV)/.dev-installed
	$(PY) scripts/typecheck_tree.py build/typecheck
	cd build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p agentguard

# The collector's eBPF tests need Debian's bpftrace: installed when missing and we are root.
ebpf-tools:
	@if ! command -v bpftrace >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bpftrace; \
	fi

# Two workers, a test file on one of them (module fixtures such as a shared eBPF collector stay
# whole): about half the time of one process on two cores. `$(PY) -m pytest` runs it serially.
test: lint typecheck ebpf-tools
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(VENV)/.dev-installed
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) build demo-output
