# The two commands a new machine needs: `make demo` and `make test` (both install what they need).
SHELL := /bin/bash
VENV := .venv/bin
export CALLTRACK_REQUIRE_LAB ?= 1
export CALLTRACK_REQUIRE_BROWSER ?= 1
export CALLTRACK_REQUIRE_POSTGRES ?= 1
export CALLTRACK_REQUIRE_TMPFS ?= 1

.PHONY: install lab demo test lint check-widget bench

install:
	scripts/bootstrap

lab: install
	scripts/asterisk-lab install
	scripts/asterisk-lab start

demo: install lab
	scripts/demo

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

check-widget: install
	scripts/widget-size

# the lab's tests beside the others (scripts/run-tests says why); its runs' --durations name the
# slowest tests in every log (CI has a time budget to keep)
test: install lab lint check-widget
	VENV=$(VENV) scripts/run-tests

bench: install lab
	$(VENV)/python bench/lease_api.py
