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
# The smoke chain runs two notebooks at once where the dependency graph allows, their OpenMP threads
# waiting passively (spinning, two kernels of two threads each on two cores slow each other several
# times over); a real profile runs one at a time: its training takes every core and its times are reported.
JOBS ?= $(if $(filter smoke,$(PROFILE)),2,1)
PARALLEL := $(filter-out 1,$(JOBS))
REPRODUCE_T0 ?= $(shell date +%s)
export REPRODUCE_T0

.PHONY: help setup pdf-tools data test lint smoke reproduce readme-results experiments-log lab clean-reports clean-cache FORCE

help:
	@echo "make reproduce        re-execute every notebook (PROFILE=$(PROFILE)) into $(REPORTS)/"
	@echo "make test             lint + tests (includes a smoke run of every notebook)"
	@echo "make smoke            the whole notebook chain on a small subset, into build/smoke/reports"
	@echo "make data             find or download the Kaggle set (DATA_URL=<zip> or Kaggle), the figshare masks and every"
	@echo "                      collection (Br35H, BraTS slices, OASIS, OpenNeuro; <NAME>_URL=<zip> for each)"
	@echo "make lab              JupyterLab on the project's kernel"
	@echo "make setup            .venv with pinned packages, editable library, Jupyter kernel"
	@echo "make lint             ruff over the library, tests, notebooks, benchmarks and experiments"
	@echo "make pdf-tools        Debian's chromium and poppler-utils, for the PDF export (installed if missing)"
	@echo "make readme-results   the README's results block, from $(REPORTS)/metrics"
	@echo "make experiments-log  docs/experiments.md's table of screens, from experiments/results"
	@echo "make clean-reports    forget the executed notebooks and exports, so the next reproduce reruns every notebook"
	@echo "make clean-cache      delete data/interim's image caches and finished runs (they retrain)"
	@echo "make help             this list"

setup: $(STAMP)

# pip compiles bytecode one file at a time; compileall does it on every core afterwards (without
# bytecode every process would compile torch again where PYTHONDONTWRITEBYTECODE is set). torch ships
# one file written for Python 3.12, left uncompiled as pip leaves it.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version.split()[0]} ($(PYTHON)); set PYTHON=/path/to/python3.11"'
	@echo "==> setting up $(VENV) (first time: a few minutes; torch is large)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt -c constraints.txt
	$(PY) -m compileall -q -j 0 -x py312_intrinsics $(VENV)/lib
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name braintumour --display-name "Python (braintumour)" >/dev/null
	@touch $@

# Headless Chromium prints the HTML to PDF; poppler's pdftoppm lets the tests look at a page.
pdf-tools:
	@command -v chromium >/dev/null && command -v pdftoppm >/dev/null || { \
	  echo "==> installing Debian's chromium and poppler-utils for the PDF export"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    chromium poppler-utils fonts-dejavu-core >/dev/null; }

data: $(STAMP)
	$(PY) -m braintumour data

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests notebooks benchmarks experiments

test: lint pdf-tools
	$(PY) -m pytest -q

smoke: $(STAMP)
	$(MAKE) --no-print-directory reproduce PROFILE=smoke

# Rewritten only when the data fingerprint changes, so notebooks rerun when the data does.
$(FINGERPRINT): FORCE | $(STAMP)
	@mkdir -p $(@D)
	@$(PY) -m braintumour manifest --fingerprint-only > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# Each notebook depends on its source, the library, the data, and the notebooks whose outputs it
# reads (UPSTREAM_<name>). The story order of the numbers is kept except where a notebook reads a
# later one's results: 02 reads the class-weighting ablation that 03 trains, and 10 (the summary) reads 11.
UPSTREAM_01_eda := 00_data
UPSTREAM_02_class_imbalance := 00_data 03_custom_cnn
UPSTREAM_03_custom_cnn := 00_data 01_eda
UPSTREAM_04_baselines := 00_data 01_eda 03_custom_cnn
UPSTREAM_05_gradcam := 00_data 03_custom_cnn 04_baselines
UPSTREAM_06_patient_folds := 00_data 01_eda
UPSTREAM_07_mask_guided := 00_data 01_eda 03_custom_cnn 05_gradcam 06_patient_folds
UPSTREAM_08_external := 00_data 01_eda 03_custom_cnn 04_baselines 05_gradcam 07_mask_guided
UPSTREAM_09_calibration := 00_data 01_eda 03_custom_cnn 04_baselines 07_mask_guided 08_external
UPSTREAM_10_results := $(filter-out 10_results,$(basename $(notdir $(NOTEBOOKS))))
UPSTREAM_11_generalisation := 00_data 01_eda 03_custom_cnn 04_baselines 07_mask_guided 08_external 09_calibration
upstream = $(foreach u,$(UPSTREAM_$(1)),$(filter $(REPORTS)/executed/$(u).ipynb,$(EXECUTED)))
define notebook_rule
$(REPORTS)/executed/$(1).ipynb: notebooks/$(1).ipynb $(LIB) $(FINGERPRINT) $(call upstream,$(1)) | $(STAMP)
	@$(PY) -m braintumour notebook notebooks/$(1).ipynb --profile $(PROFILE) --reports $(REPORTS) \
	  --position "$$$$(( $$$$(cat $(RAN) 2>/dev/null | wc -l) + 1 ))/$(words $(EXECUTED))"
	@echo $(1) >> $(RAN)
endef
$(foreach nb,$(NOTEBOOKS),$(eval $(call notebook_rule,$(basename $(notdir $(nb))))))

reproduce: $(STAMP) pdf-tools
	@rm -f $(RAN)
	@$(if $(PARALLEL),OMP_WAIT_POLICY=PASSIVE) $(MAKE) --no-print-directory --jobs=$(JOBS) \
	  $(if $(PARALLEL),--output-sync=target) $(EXECUTED)
	@if [ -f $(REPORTS)/pdf/10_results.pdf ]; then cp $(REPORTS)/pdf/10_results.pdf $(REPORTS)/report.pdf; fi
	@if [ "$(PROFILE)" = cpu ]; then $(MAKE) --no-print-directory readme-results; fi
	@if [ -f $(RAN) ]; then echo "==> reproduce ($(PROFILE)) finished: $$(wc -l < $(RAN)) notebook(s) re-executed into $(REPORTS)/"; \
	else echo "==> nothing to do: every notebook in $(REPORTS)/ is up to date with its source, the library and the data (make clean-reports forces a rerun)"; fi
	@rm -f $(RAN)

readme-results: $(STAMP)
	$(PY) -m braintumour readme-results --metrics $(REPORTS)/metrics

experiments-log: $(STAMP)
	$(PY) -m braintumour experiments-log

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-reports:
	rm -rf $(REPORTS)/executed $(REPORTS)/html $(REPORTS)/pdf $(REPORTS)/report.pdf $(FINGERPRINT)

clean-cache:
	rm -rf data/interim/*.npy data/interim/*.json data/interim/manifest.csv data/interim/runs

FORCE:
