# The README's commands. Everything installs into .venv; pip's cache keeps
# reinstalls fast (llama-cpp-python compiles llama.cpp once, ~7 min).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= toolchain,bench,test
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
# llama.cpp's native build turns on ggml's AMX kernels wherever the CPU lists AMX. On the Xeon
# machines here they stop the process with an illegal instruction (tilezero straight after ggml's
# own ldtilecfg) as soon as a prompt is evaluated. Decoding one token at a time never uses them,
# so x86-64 builds leave them out; AVX-512 and VNNI stay.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
export CFLAGS += $(NO_AMX)
export CXXFLAGS += $(NO_AMX)
endif

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
	# pip's cache may hold a llama.cpp compiled with AMX before the flags above: drop it, compile again.
	$(PY) -c "import sys, llama_cpp; sys.exit(b'AMX_INT8 = 1' in llama_cpp.llama_print_system_info())" \
	  || { $(PY) -m pip cache remove llama_cpp_python \
	       && $(PY) -m pip install --force-reinstall --no-deps "$$(grep -o 'llama-cpp-python==[0-9.]*' setup.cfg)"; }
	touch $(STAMP)

protos: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) build *.egg-info
