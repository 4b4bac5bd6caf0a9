# Two commands for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test install install-test contact-sheet clean

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## demo: the whole loop on the embedded synthetic dataset (dvc repro), then the per-round table
demo: install
	$(BIN)/dvc repro
	$(BIN)/visem-pl report

## test: the whole suite (CI runs this through .ci/run)
test: install-test
	$(BIN)/pytest

## contact-sheet: re-render docs/contact_sheet.png from the synthetic dataset
contact-sheet: install
	$(BIN)/visem-pl contact-sheet data/synthetic docs/contact_sheet.png

clean:
	rm -rf data/synthetic metrics
