# Two commands do all the set-up (see README):
#   make demo   create .venv if missing, install, simulate the demo nights, run the workflow
#   make test   create .venv if missing, install with test tools, run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: demo test lint format report cluster clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements-slurm.txt $(VENV)/.installed
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

demo/raw: | $(VENV)/.installed
	$(BIN)/python scripts/simulate_nights.py demo

demo: $(VENV)/.installed demo/raw
	$(BIN)/snakemake --cores $(CORES)

$(VENV)/.installed-slurm: requirements-slurm.txt $(VENV)/.installed
	$(BIN)/python -m pip install -r requirements-slurm.txt
	touch $@

# the workflow on a SLURM cluster: set partition/account in profiles/slurm first
cluster: $(VENV)/.installed-slurm
	$(BIN)/snakemake --profile profiles/slurm

report: demo
	$(BIN)/snakemake --report report.html

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile .test/config/config.yaml

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile rules

clean:
	rm -rf results demo report.html .snakemake .test/results
