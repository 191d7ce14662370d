# Loom's two set-up commands: `make run` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# llama.cpp (the embedded model) is compiled for any x86-64 CPU with AVX2, not with
# -march=native: on a CPU that reports AMX, a native build crashes in its first decode.
# pip reuses a wheel it built before whatever CMAKE_ARGS say, so a native build found
# in its cache is rebuilt once, without the cache.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_PIN := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
NATIVE_LLAMA := import llama_cpp, sys; info = llama_cpp.llama_print_system_info().decode(); \
	sys.exit(("AMX" in info or "AVX512 = 1" in info) and "native build of llama.cpp")

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -c '$(NATIVE_LLAMA)' || \
	  $(BIN)/pip install --quiet --no-cache-dir --force-reinstall --no-deps '$(LLAMA_PIN)'
	$(BIN)/python -c '$(NATIVE_LLAMA)'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/loom serve

test: install
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install
	$(BIN)/python -m bench.responses

clean:
	rm -rf $(VENV) build *.egg-info
