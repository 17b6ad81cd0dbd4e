# The README's commands. Everything installs into .venv; pip's cache keeps
# reinstalls fast (llama-cpp-python compiles llama.cpp once, ~7 min).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= toolchain,bench,test
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: run test install model protos clean

run: model
	$(PY) -m agent.demo

# Builds the default model once (progress shown); later runs find it and verify it.
model: $(STAMP)
	$(VENV)/bin/vehicle-agent-toolchain build --recipe models/recipes/default.yaml --if-missing

test: $(STAMP)
	bash .ci/system-deps test
	$(PY) -m pytest -q

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	bash .ci/system-deps build
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	touch $(STAMP)

protos: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) build *.egg-info
