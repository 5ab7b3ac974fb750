# The two commands a newcomer needs are `make demo` and `make test`; both set up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo clean models

setup: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing edge-agent with its dev tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev,demo]'
	$(BIN)/python scripts/settle_page_cache.py $(VENV) models
	@touch $(STAMP)

test: setup lint
	$(BIN)/python -m pytest

# The same checks as .pre-commit-config.yaml: lint, formatting, types.
lint: setup
	$(BIN)/ruff check edge_agent tests scripts
	$(BIN)/ruff format --check edge_agent tests scripts
	$(BIN)/mypy

demo: setup
	$(BIN)/edge-agent demo

# Rebuilds models/ from the pinned upstream wheels (needs TensorFlow; not part of setup).
# MODELS_ARGS passes options on, e.g. MODELS_ARGS="--out /tmp/m --test-data /tmp/m".
MODELS_ARGS ?=
models:
	$(PYTHON) scripts/build_models.py $(MODELS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
