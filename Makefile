# Every target creates the virtual environment and installs what it needs,
# so `make run` and `make test` work on a fresh machine with Python 3.11.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test check bench soak clean fuzz fuzz-replay

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The main job: the conformance matrix of the bundled adapters on a v1 (memory) and a v2 (memory-v2) deployment.
run: $(STAMP)
	$(BIN)/python -m conformance matrix --chain memory --deployments v1,v2 --profile ci

# The model checker alone (exhaustive, depth 8, model.fastcheck; `--plain` runs the anchor explorer).
check: $(STAMP)
	$(BIN)/python -m model.check

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# A long soak: the deep profile on every bundled pair and machine, several seeds (never part of `make test`),
# then a kill -9 loop of a separate server process paid by 3 client processes through a chain service
# (adapters/reference/soak.py; it fails on any lost voucher, double charge or orphaned deposit).
SOAK_SEEDS ?= 1 2 3 4 5
KILL_SOAK_ARGS ?= --seed 1 --duration 90 --kills 10 --clients 3
soak: $(STAMP)
	for s in $(SOAK_SEEDS); do $(BIN)/python -m conformance matrix --profile deep --seed $$s || exit 1; done
	$(BIN)/python -m conformance run --client reference --server reference --chain evm --profile ci --machine all
	$(BIN)/python -m adapters.reference.soak $(KILL_SOAK_ARGS)

# A bounded HypoFuzz campaign (coverage-guided, FUZZ_WORKERS processes) on the conformance machines of
# conformance/fuzz.py, on one shared example database (TEMPO_FUZZ_DB, or Redis: TEMPO_FUZZ_REDIS), then its
# figures and failures. `make fuzz-replay` replays every failure in that database (on any machine).
FUZZ_SECONDS ?= 60
FUZZ_WORKERS ?= 2
FUZZ_STAMP := $(VENV)/.installed-fuzz
$(FUZZ_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,fuzz]'
	touch $(FUZZ_STAMP)
fuzz: $(FUZZ_STAMP)
	rm -rf $${TEMPO_FUZZ_STATS:-.conformance/fuzz-stats}
	mkdir -p .conformance
	timeout -s INT $(FUZZ_SECONDS) $(BIN)/hypothesis fuzz -n $(FUZZ_WORKERS) --no-dashboard -- conformance/fuzz.py \
		-p no:cacheprovider > .conformance/fuzz.log 2>&1; test $$? -eq 124 || { tail -40 .conformance/fuzz.log; exit 1; }
	$(BIN)/python -m conformance.fuzz report
fuzz-replay: $(FUZZ_STAMP)
	TEMPO_FUZZ_REPLAY_ONLY=1 $(BIN)/python -m pytest -q -p no:cacheprovider conformance/fuzz.py

# Benchmarks (ratios measured in one run; never part of `make test`).
bench: $(STAMP)
	$(BIN)/python -m adapters.reference.bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# ---- chain backends (adapters/chain) -----------------------------------------
# `contracts` rebuilds adapters/chain/artifacts/*.json with the pinned solc from
# npm (commit the result); `test-chain` runs only the chain backend tests.
.PHONY: contracts test-chain
contracts:
	cd adapters/chain/solidity && npm ci --no-audit --no-fund && node build.mjs

test-chain: $(STAMP)
	$(BIN)/python -m pytest tests/test_chain_contract.py tests/test_chain_memory.py tests/test_chain_evm.py tests/test_chain_artifact.py
# ---- end chain backends --------------------------------------------------------

# ---- mppx adapter (adapters/mppx, adapters/bridge) --------------------------
# Install the Node adapter's dependencies: mppx@0.11.0 pinned exactly, from
# adapters/mppx/package-lock.json, and mppx@0.6.31 (v1 only) for adapters/mppx-v1
# (needs Node >= 20 and npm). The mppx tests
# run the same install themselves when it is missing or the lock file changed
# (adapters/bridge/testing.py); the stamp tells them this one is current.
mppx:
	cd adapters/mppx && npm ci --legacy-peer-deps --no-audit --no-fund
	cd adapters/mppx && sha256sum package-lock.json > node_modules/.bridge-build-stamp
	cd adapters/mppx-v1 && npm ci --legacy-peer-deps --no-audit --no-fund
	cd adapters/mppx-v1 && sha256sum package-lock.json > node_modules/.bridge-build-stamp
# ---- end mppx adapter --------------------------------------------------------
test-vectors: $(STAMP) ; $(BIN)/python -m conformance vectors export vectors/fixtures && node vectors/run-vectors.mjs
