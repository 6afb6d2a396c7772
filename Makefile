# make train: set up .venv and train ResNet-20.  make test: set up everything and run the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
DATA_STAMP := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
CHROMIUM_STAMP := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup dev system-packages train test lint tensorboard screenshots notebooks notebook-pages clean

setup: $(RUNTIME_STAMP)

# Re-installs only when pyproject.toml changes (the stamp is older than it).
$(RUNTIME_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

dev: $(DEV_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# What the tests need from Debian: Fashion-MNIST (so no test needs the network) and Chromium
# (for the test that opens TensorBoard in a browser).
system-packages: $(DATA_STAMP) $(CHROMIUM_STAMP)

$(DATA_STAMP) $(CHROMIUM_STAMP) &:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist chromium

train: setup
	$(PY) train.py model=deep $(ARGS)

lint: dev
	$(VENV)/bin/ruff check .

test: dev system-packages lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir outputs --samples_per_plugin images=100

# The teaching notebooks in JupyterLab (installs it into .venv on first use).
notebooks: setup
	$(PY) -m pip install --quiet -e '.[notebooks]'
	$(VENV)/bin/jupyter lab notebooks/

# The notebooks run with their full settings and published with their outputs as docs/notebooks/*.html
# (tens of minutes on 2 cores); a test checks that every page is made from its notebook as it is now.
notebook-pages: dev system-packages
	$(PY) docs/notebook_pages.py

# Screenshots of a run's layer views in TensorBoard: make screenshots RUN=outputs/DATE/TIME
screenshots: dev system-packages
	$(PY) docs/screenshots.py $(RUN) --out docs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
