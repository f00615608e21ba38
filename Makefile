# The two commands: `make run` starts the gateway, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test test-container lint bench bench-peers install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m tools.run

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

test: $(DEV_STAMP) lint
	$(BIN)/python -m pytest

# The image and compose.yaml with a real Docker engine (provisioned from Debian's packages where
# it can be: root and apt); tests/container. README, "Running in containers".
test-container: $(DEV_STAMP)
	$(BIN)/python -m tools.container test

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.gateway

# LiteLLM's proxy, hash-locked with every dependency, in a virtual environment of its own
# (made again whenever the lock changes), then the side-by-side comparison.
PEERS_VENV := .venv-peers
PEERS_LOCK := bench/peers/litellm-requirements.txt
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): $(PEERS_LOCK)
	rm -rf $(PEERS_VENV)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --disable-pip-version-check -q --require-hashes --no-deps -r $(PEERS_LOCK)
	$(PEERS_VENV)/bin/pip check
	touch $@

bench-peers: $(DEV_STAMP) $(PEERS_STAMP)
	$(BIN)/python -m bench.peers

clean:
	rm -rf $(VENV) .pytest_cache
