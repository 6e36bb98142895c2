# Set-up is part of every target: a fresh machine with Python 3.11 needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: on a CPU-only machine this takes the CPU build instead of pulling CUDA packages.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: quickstart decoders test lint benchmark clean

quickstart: $(STAMP)
	$(BIN)/bench run suites/quickstart.yaml

# suites/decoders.yaml: its two Llamas are built offline first (about 5 minutes on 2 CPU cores; folders
# that exist in results/decoder-models are kept: delete one, or run the script with --force, to rebuild it)
decoders: $(STAMP)
	$(BIN)/python examples/decoders/build_models.py --out results/decoder-models
	$(BIN)/bench run suites/decoders.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check harness plugins tests examples benchmarks scripts

benchmark: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,ray]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
