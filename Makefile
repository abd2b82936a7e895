# The project's commands. Each installs what it needs into .venv first (once).
#   make repro    the real pipeline: dvc repro (needs the EMNIST archive: network or pre-staged)
#   make offline  the whole pipeline on generated data, as a DVC experiment (main's state untouched)
#   make test     the test suite (what CI runs)
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0: on this project's machines pip takes a local CPU wheel in seconds; on a Linux
# GPU machine the same pin pulls PyPI's CUDA build. Override with e.g. TORCH_SPEC='torch==2.5.1'.
TORCH_SPEC ?= torch==2.13.0
export PATH := $(abspath $(BIN)):$(PATH)

# The offline demo: generated inputs, and networks and epochs small enough for a laptop CPU.
OFFLINE_PARAMS ?= -S data.source=handwriting \
	-S emnist_lines.num_train=3000 -S emnist_lines.num_val=300 -S emnist_lines.num_test=300 \
	-S model.width=16 -S train_cnn.epochs=4 -S train_cnn.batch_size=256 \
	-S line_model.width=16 -S line_model.fc_dim=64 \
	-S train_line_cnn.epochs=16 -S train_line_cnn.batch_size=64 -S train_line_cnn.lr=0.005

.PHONY: setup pipeline-setup repro offline offline-params test lint bench

# setup: everything (tests, lint, the web page, ONNX); pipeline-setup: what `dvc repro` needs, ~1 min less.
setup: $(VENV)/.installed
pipeline-setup: $(VENV)/.pipeline

$(VENV)/.pipeline: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed: $(VENV)/.pipeline
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,app,browser-test,onnx]'
	touch $@

repro: pipeline-setup
	dvc repro

offline: pipeline-setup
	dvc exp run -n offline-$(shell date +%Y%m%d-%H%M%S) $(OFFLINE_PARAMS)

# The offline recipe as -S flags, for scripts and the tests' offline_models fixture (one source).
offline-params:
	@echo $(OFFLINE_PARAMS)

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/emnist_lines_speed.py
