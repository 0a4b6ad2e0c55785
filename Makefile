# Every target creates the virtual environment and installs what it needs,
# so `make run` and `make test` work on a fresh machine with Python 3.11.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test check bench soak clean mppx

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The main job: the conformance matrix of the bundled adapters on the memory chain.
run: $(STAMP)
	$(BIN)/python -m conformance matrix --chain memory --profile ci

# The model checker alone (exhaustive, small parameters).
check: $(STAMP)
	$(BIN)/python -m model.check

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
