# Two commands for a newcomer: `make run` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 12434

.PHONY: run test bench chaos lint venv model llama-server browser clean shellcheck wrk gpu-check

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing llama-gateway with its dependencies (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[test]'
	touch $@

venv: $(VENV)/.installed

model: venv
	@$(PY) scripts/assets.py model

llama-server: venv
	@$(PY) scripts/assets.py llama-server

# Serve the demo model on $(HOST):$(PORT), started by the gateway itself (the embedded default).
# The llama-server fetched into ~/.cache/llama-gateway is found by serve itself, as it is
# when you run `llama-gateway serve` by hand.
run: venv
	@echo "==> the demo model and a llama-server that runs here (fetched once into ~/.cache/llama-gateway)"
	@MODEL=$$($(PY) scripts/assets.py model) && $(PY) scripts/assets.py llama-server >/dev/null && \
	$(PY) scripts/demo_banner.py $(HOST) $(PORT) && \
	exec $(VENV)/bin/llama-gateway serve --host $(HOST) --port $(PORT) \
		--model smollm2=$$MODEL --no-auth

# Debian's chromium + chromedriver for the console's browser tests, installed when missing.
browser:
	@sh scripts/install_browser.sh

# Debian's shellcheck for the shell scripts' tests (tests/loadtest/test_gpu_script.py).
shellcheck:
	@command -v shellcheck >/dev/null || { apt-get update -qq && apt-get install -y -qq shellcheck; }

# Debian's wrk, the closed-loop load of make bench's overhead scenario and of loadtest.ab (its
# smoke test is in make test).
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

test: venv browser shellcheck wrk
	@MODEL=$$($(PY) scripts/assets.py model) && BIN=$$($(PY) scripts/assets.py llama-server) && \
	LLAMA_GATEWAY_TEST_MODEL=$$MODEL LLAMA_SERVER_BIN=$$BIN $(PY) -m pytest -q

bench: venv wrk
	@MODEL=$$($(PY) scripts/assets.py model) && BIN=$$($(PY) scripts/assets.py llama-server) && \
	LLAMA_GATEWAY_TEST_MODEL=$$MODEL LLAMA_SERVER_BIN=$$BIN $(PY) -m loadtest all

# Break things under load on loopback (Redis restarts and kills, a Sentinel failover, replica
# kills, …) and print how every request ended; bounded in time and count. SCENARIOS=name… for some.
chaos: venv
	@MODEL=$$($(PY) scripts/assets.py model) && BIN=$$($(PY) scripts/assets.py llama-server) && \
	LLAMA_GATEWAY_TEST_MODEL=$$MODEL LLAMA_SERVER_BIN=$$BIN $(PY) -m tests.chaos $(SCENARIOS)

# The GPU run's CPU-side steps, slow tier: prepare the bundle (~250 MB, PyPI + apt), install it
# offline into a fresh venv, configure the CPU build, run the orchestration on the CPU binary.
gpu-check: venv shellcheck
	@BIN=$$($(PY) scripts/assets.py llama-server) && LLAMA_SERVER_BIN=$$BIN LLAMA_GATEWAY_GPU_CHECK=1 \
	$(PY) -m pytest -q tests/loadtest/test_gpu_script.py

lint: venv
	$(VENV)/bin/ruff check gateway tests scripts loadtest
	$(VENV)/bin/ruff format --check gateway tests scripts loadtest
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
