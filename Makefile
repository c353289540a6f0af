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
# The offline wheelhouse's target: the GPU machine's Python and CPU architecture.
WHEEL_PYTHON ?= 3.12
WHEEL_ARCH ?= x86_64

.PHONY: install install-dev chromium demo test test-fast lint doctor sync-notebooks figures \
	reference clean wheelhouse

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

# Debian's chromium, for the JupyterLab browser test (tests/test_jupyterlab.py): installed from the
# OS packages when missing (as root, else through sudo). Playwright's own browsers are never used.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else sudo=none; fi; \
	  if [ "$$sudo" != none ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Debian's chromium for the JupyterLab browser test (about a minute)"; \
	    $$sudo apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  fi; \
	  command -v chromium >/dev/null 2>&1 || echo "WARNING: chromium is not installed and could \
	not be installed here, so tests/test_jupyterlab.py will fail. Install it with: \
	sudo apt-get install -y chromium"; \
	}

demo: install
	$(BIN)/persrm run --profile $(PROFILE) --run $(RUN) --solutions
	@echo "Plots and figures are inside the executed notebooks; open them with: $(BIN)/jupyter lab runs/$(RUN)/notebooks"

test: install-dev chromium
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

test-fast: install-dev
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

lint: install-dev
	$(BIN)/ruff check src tests scripts notebooks
	$(BIN)/ruff format --check src tests scripts notebooks
	$(BIN)/lint-imports
	$(BIN)/python scripts/sync_notebooks.py --check
	$(BIN)/python scripts/sync_figures.py --check

doctor: install
	$(BIN)/persrm doctor

sync-notebooks: install
	$(BIN)/python scripts/sync_notebooks.py

# The GPU extras as wheels for an offline GPU machine (needs pip and the package index here, not
# there): install them there with `bash scripts/install_offline.sh wheelhouse/`.
wheelhouse:
	$(PYTHON) scripts/build_wheelhouse.py --python $(WHEEL_PYTHON) --arch $(WHEEL_ARCH) --out wheelhouse

# Regenerate the measured figures (notebook headers, README, teacher's guide) from the records.
figures: install
	$(BIN)/python scripts/sync_figures.py

# Worked outputs: record a finished run's times and publish its executed notebooks, e.g.
#   make demo PROFILE=cpu && make reference RUN=cpu
reference: install
	$(BIN)/python scripts/sync_figures.py --record runs/$(RUN) --reference runs/$(RUN)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
