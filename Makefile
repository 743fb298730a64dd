# The front door. `make reproduce` regenerates reports/; `make test` runs lint and tests.
# Both set up what they need first (.venv, pinned packages, Jupyter kernel).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PROFILE ?= cpu
# The cpu profile writes the committed reports/; smoke and full runs write elsewhere so they
# never overwrite it.
REPORTS ?= $(if $(filter cpu,$(PROFILE)),reports,build/$(PROFILE)/reports)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
EXECUTED := $(patsubst notebooks/%,$(REPORTS)/executed/%,$(NOTEBOOKS))
LIB := $(shell find lib/braintumour -name '*.py' 2>/dev/null)
FINGERPRINT := $(REPORTS)/.data-fingerprint
RAN := $(REPORTS)/.ran
REPRODUCE_T0 ?= $(shell date +%s)
export REPRODUCE_T0

.PHONY: help setup data test lint smoke reproduce lab clean-reports clean-cache FORCE

help:
	@echo "make reproduce   re-execute every notebook (PROFILE=$(PROFILE)) into $(REPORTS)/"
	@echo "make test        lint + tests (includes a smoke run of every notebook)"
	@echo "make smoke       the whole notebook chain on a small subset, into build/smoke/reports"
	@echo "make data        find the dataset or download it (DATA_URL=<zip> or Kaggle)"
	@echo "make lab         JupyterLab on the project's kernel"
	@echo "make setup       .venv with pinned packages, editable library, Jupyter kernel"

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version.split()[0]} ($(PYTHON)); set PYTHON=/path/to/python3.11"'
	@echo "==> setting up $(VENV) (first time: a few minutes; torch is large)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name braintumour --display-name "Python (braintumour)" >/dev/null
	@touch $@

data: $(STAMP)
	$(PY) -m braintumour data

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests notebooks

test: lint
	$(PY) -m pytest -q

smoke: $(STAMP)
	$(MAKE) --no-print-directory reproduce PROFILE=smoke

# Rewritten only when the data fingerprint changes, so notebooks rerun when the data does.
$(FINGERPRINT): FORCE | $(STAMP)
	@mkdir -p $(@D)
	@$(PY) -m braintumour manifest --fingerprint-only > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# Each notebook depends on its source, the library, the data, and the notebook before it.
define notebook_rule
$(REPORTS)/executed/$(notdir $(1)): $(1) $(LIB) $(FINGERPRINT) $(2) | $(STAMP)
	@$(PY) -m braintumour notebook $(1) --profile $(PROFILE) --reports $(REPORTS) \
	  --position "$(3)/$(words $(NOTEBOOKS))"
	@echo $(notdir $(1)) >> $(RAN)
endef
PREVIOUS := none $(EXECUTED)
$(foreach i,$(shell seq 1 $(words $(NOTEBOOKS))),$(eval $(call notebook_rule,$(word $(i),$(NOTEBOOKS)),$(filter-out none,$(word $(i),$(PREVIOUS))),$(i))))

reproduce: $(STAMP)
	@rm -f $(RAN)
	@$(MAKE) --no-print-directory $(EXECUTED)
	@if [ -f $(RAN) ]; then echo "==> reproduce ($(PROFILE)) finished: $$(wc -l < $(RAN)) notebook(s) re-executed into $(REPORTS)/"; \
	else echo "==> nothing to do: every notebook in $(REPORTS)/ is up to date with its source, the library and the data (make clean-reports forces a rerun)"; fi
	@rm -f $(RAN)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-reports:
	rm -rf $(REPORTS)/executed $(REPORTS)/html $(FINGERPRINT)

clean-cache:
	rm -rf data/interim/*.npy data/interim/*.json data/interim/manifest.csv data/interim/runs

FORCE:
