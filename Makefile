# Two commands for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint format install install-test ls-venv browser contact-sheet clean

# Label Studio, the server the live review tests start, in its own virtual environment (its pins
# would fight ours); the stamp names the version, so a new pin rebuilds it and an old one is kept.
LS_VENV ?= .ls-venv
LABEL_STUDIO_VERSION ?= 1.23.2

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(LS_VENV)/.installed-$(LABEL_STUDIO_VERSION):
	python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q 'label-studio==$(LABEL_STUDIO_VERSION)'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
## ls-venv: label-studio in .ls-venv/ (the live Label Studio tests start it on 127.0.0.1)
ls-venv: $(LS_VENV)/.installed-$(LABEL_STUDIO_VERSION)

## browser: Debian's chromium, the real browser the HTML report's tests open the page in (apt-get, as root; a
## no-op when /usr/bin/chromium is there; elsewhere it says so and the browser tests skip, except under CI)
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then \
	    echo "browser: $$($(CHROMIUM) --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "browser: installing Debian's chromium (apt-get)"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null && \
	    echo "browser: $$($(CHROMIUM) --version 2>/dev/null)"; \
	else \
	    echo "browser: no $(CHROMIUM), and it cannot be installed here (needs root and apt-get): the browser" \
	         "tests will be skipped; as root run 'make browser' (apt-get install chromium)"; \
	fi

## demo: the whole loop on the embedded synthetic dataset (dvc repro), then motility, the per-round table and
## the HTML round report (reports/round-report.html, one offline file)
demo: install
	$(BIN)/dvc repro
	$(BIN)/visem-pl motility --round 0
	$(BIN)/visem-pl report --html reports/round-report.html

## test: the whole suite (CI runs this through .ci/run), in a network namespace with only loopback
test: install-test ls-venv browser
	tests/netguard/run-offline $(BIN)/pytest

## lint: ruff's linter and formatter check over the whole tree (CI runs it before the tests)
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## format: let ruff fix what it can (imports, formatting)
format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## contact-sheet: re-render docs/contact_sheet.png from the synthetic dataset
contact-sheet: install
	$(BIN)/visem-pl contact-sheet data/synthetic docs/contact_sheet.png

clean:
	rm -rf data/synthetic metrics
