# The series' two contracts:
#   make demo   set up the environment and run every notebook (smoke profile by default)
#   make test   set up the environment and run the tests
# Both create .venv with the pinned versions on first use (about a minute on a fast connection).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PROFILE ?= smoke
RUN ?= $(PROFILE)
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install install-dev demo test test-fast lint doctor sync-notebooks clean

install: $(VENV)/.stamp-runtime
install-dev: $(VENV)/.stamp-dev

$(VENV)/.stamp-runtime: requirements/base.txt requirements/cpu.txt requirements/nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/cpu.txt
	$(PIP) install -q --no-deps -r requirements/nodeps.txt
	$(PIP) install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (persrm)" >/dev/null
	@touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-runtime requirements/dev.txt
	$(PIP) install -q -r requirements/dev.txt
	@touch $@

demo: install
	$(BIN)/persrm run --profile $(PROFILE) --run $(RUN)
	@echo "Plots and figures are inside the executed notebooks; open them with: $(BIN)/jupyter lab runs/$(RUN)/notebooks"

test: install-dev
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

test-fast: install-dev
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

lint: install-dev
	$(BIN)/ruff check src tests scripts notebooks
	$(BIN)/ruff format --check src tests scripts notebooks
	$(BIN)/python scripts/sync_notebooks.py --check

doctor: install
	$(BIN)/persrm doctor

sync-notebooks: install
	$(BIN)/python scripts/sync_notebooks.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
