# On a fresh machine: `make test` builds .venv, installs bayes_larq[dev] and runs the suite
# (`make lint`: ruff, configured in pyproject.toml);
# `make demo` installs bayes_larq alone, gets Fashion-MNIST (apt) and runs the main job
# (`bayes-larq demo`);
# `make docs` builds the documentation site into site/ (mkdocs.yml), strictly: any warning fails.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test lint install demo docs fashion-mnist

# The demo needs the package alone (.installed-core); tests, lint and docs the extras too.
$(VENV)/.installed-core: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core
	$(PY) -m pip install -q -e ".[dev,docs]"
	# Larq Zoo's architectures test bayesianize on third-party models. Its pins (protobuf
	# < 3.21, tensorflow-datasets < 4.9) do not fit TensorFlow 2.21, and none of those
	# pinned packages is needed to build its models, so it is installed without them.
	$(PY) -m pip install -q --no-deps larq-zoo==2.4.0 zookeeper==1.4.0
	touch $@

install: $(VENV)/.installed

# Two processes (pytest-xdist), each taking whole test files, so module fixtures are built
# once. On this 2-core machine, under load, test_training + test_quantizers + test_losses
# took 4.9 min against 6.6 in one process. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# NO_MKDOCS_2_WARNING: the material theme's notice about MkDocs 2 is not a build warning.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Skipped when the IDX files are already there or BAYES_LARQ_FASHION_MNIST_DIR points at them.
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST_DIR) ] && [ -z "$$BAYES_LARQ_FASHION_MNIST_DIR" ]; then \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q dataset-fashion-mnist; fi

demo: $(VENV)/.installed-core fashion-mnist
	$(VENV)/bin/bayes-larq demo
