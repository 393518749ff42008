# The two quick-start commands are `make demo` and `make test`; both start from a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
EMULATOR_IMAGE_FILE := $(CACHE)/emulator-image

.PHONY: help
help:
	@echo "make demo    run the gateway with emulator engines and print a playable URL"
	@echo "make test    install what is needed, then run linters, type checks and all tests"
	@echo "make lint    ruff, mypy --strict and the import-linter layer contracts"
	@echo "make bench   run the benchmarks (figures in bench-results/ and docs/BENCHMARKS.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed

.PHONY: packages
packages:
	scripts/ensure-packages

.PHONY: docker
docker:
	scripts/ensure-docker

.PHONY: images
images: packages docker
	@mkdir -p $(CACHE)
	scripts/emulator-image | tail -n 1 > $(EMULATOR_IMAGE_FILE)
	@echo "emulator image: $$(cat $(EMULATOR_IMAGE_FILE))"

.PHONY: lint
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: test
test: venv packages images lint
	EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" $(BIN)/pytest -W error $(PYTEST_ARGS)

.PHONY: demo
demo: venv packages images
	EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" scripts/demo

.PHONY: bench
bench: venv packages images
	EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" $(BIN)/python -m tests.bench

.PHONY: clean
clean:
	rm -rf $(VENV) $(CACHE) .mypy_cache .ruff_cache .pytest_cache
