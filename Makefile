# The two quick-start commands are `make demo` and `make test`; both start from a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
EMULATOR_IMAGE_FILE := $(CACHE)/emulator-image
GATEWAY_IMAGE_FILE := $(CACHE)/gateway-image
STANDIN_IMAGES_FILE := $(CACHE)/standin-images
VPN_STANDIN_IMAGE_FILE := $(CACHE)/vpn-standin-image
IMAGES = EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" GATEWAY_IMAGE="$$(cat $(GATEWAY_IMAGE_FILE))" \
	STANDIN_IMAGES="$$(tr '\n' ' ' < $(STANDIN_IMAGES_FILE))" \
	VPN_STANDIN_IMAGE="$$(cat $(VPN_STANDIN_IMAGE_FILE))"

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

# Images are built locally (no registry) and tagged by a hash of their inputs: cheap when unchanged.
.PHONY: emulator-image
emulator-image: packages docker
	@mkdir -p $(CACHE)
	scripts/emulator-image | tail -n 1 > $(EMULATOR_IMAGE_FILE)

.PHONY: gateway-image
gateway-image: packages docker venv
	@mkdir -p $(CACHE)
	PIP=$(BIN)/pip scripts/gateway-image | tail -n 1 > $(GATEWAY_IMAGE_FILE)

# One `<preset>=<image>` line per real engine image's contract, each wrapping the emulator image.
.PHONY: standin-images
standin-images: emulator-image
	EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" scripts/standin-images > $(STANDIN_IMAGES_FILE).new
	mv $(STANDIN_IMAGES_FILE).new $(STANDIN_IMAGES_FILE)

# A Gluetun look-alike (tests/equipment/gluetun_standin.py) on the same base, for VPN-mode tests.
.PHONY: vpn-standin-image
vpn-standin-image: emulator-image
	scripts/vpn-standin-image | tail -n 1 > $(VPN_STANDIN_IMAGE_FILE)

.PHONY: images
images: emulator-image gateway-image standin-images vpn-standin-image

.PHONY: lint
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: test
test: venv packages images lint
	$(IMAGES) $(BIN)/pytest -W error $(PYTEST_ARGS)

.PHONY: demo
demo: venv packages emulator-image
	EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" scripts/demo

# BENCH_ARGS="--only failover" reruns one phase and keeps the other's figures.
.PHONY: bench
bench: venv packages docker emulator-image
	EMULATOR_IMAGE="$$(cat $(EMULATOR_IMAGE_FILE))" $(BIN)/python -m tests.bench $(BENCH_ARGS)

.PHONY: clean
clean:
	rm -rf $(VENV) $(CACHE) .mypy_cache .ruff_cache .pytest_cache
