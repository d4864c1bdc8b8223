# paralign: the front door. `make train` (the embedded demo) and `make test` are all a new user needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PARALIGN := $(VENV)/bin/paralign
# The embedded demo: ~47 minutes on 2 CPU cores the first time (corpus, transcripts, teacher replies, training,
# evaluation).
RECIPE ?= recipes/demo.yaml
ARGS ?=
NODES ?= 1
GPUS ?= 1
PARTITION ?=
TIME ?= 24:00:00
DRY ?=
CKPT ?=
RUNS ?= runs
# TensorBoard shows run configs and sample generations: only this machine may see them unless asked
# (`make tensorboard TB_HOST=0.0.0.0`; reach it from elsewhere through `ssh -L 6006:localhost:6006 host`).
TB_HOST ?= 127.0.0.1
TB_PORT ?= 6006

.PHONY: setup browser train test test-fast data eval bench slurm tensorboard clean

setup:
	@bash scripts/setup.sh

# Debian's headless Chromium and chromedriver for the page test (tests/browser.py); only the tests need them, so
# `make train` never installs a browser. Where apt-get as root is missing it says so and the test skips. After setup
# (even under `make -j`): both may run apt-get, and two at once fight over dpkg's lock.
browser: setup
	@bash scripts/setup_browser.sh

train: setup
	$(PARALIGN) train --recipe $(RECIPE) $(ARGS)

data: setup
	$(PARALIGN) data --recipe $(RECIPE) $(ARGS)

# CKPT=runs/<name>/<time>/checkpoints/last.ckpt; a cascade recipe (recipes/cascade_*.yaml) takes none.
eval: setup
	$(PARALIGN) eval --recipe $(RECIPE) $(if $(CKPT),--ckpt $(CKPT)) $(ARGS)

test: setup browser
	$(PY) -m pytest -q $(ARGS)

test-fast: setup browser
	$(PY) -m pytest -q -m "not slow" $(ARGS)

bench: setup
	$(PARALIGN) bench $(ARGS)

slurm: setup
	$(PARALIGN) slurm --recipe $(RECIPE) --nodes $(NODES) --gpus $(GPUS) $(if $(TIME),--time $(TIME)) \
		$(if $(PARTITION),--partition $(PARTITION)) $(if $(DRY),--dry) $(ARGS)

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir $(RUNS) --host $(TB_HOST) --port $(TB_PORT)

clean:
	rm -rf $(VENV) .pytest_cache
