# Quick start: `make demo`, `make test`. Everything installs into ./.venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := build/demo
# The real engine's wheel exists for Linux x86-64 only; elsewhere the directory backend is used.
EXTRAS := $(shell [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ] && echo aspose,dev || echo dev)

.PHONY: demo test test-fast lint typecheck pytest pytest-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/python -m reconciler.demo $(DEMO)
	@echo; echo '$$ ocr-reconcile validate manifests/example.yaml'
	@$(BIN)/ocr-reconcile validate manifests/example.yaml
	@echo; echo '$$ ocr-reconcile plan manifests/example.yaml --store $(DEMO)/models'
	@$(BIN)/ocr-reconcile plan manifests/example.yaml --store $(DEMO)/models
	@echo; echo '$$ ocr-reconcile apply --yes manifests/example.yaml --store $(DEMO)/models'
	@$(BIN)/ocr-reconcile apply --yes manifests/example.yaml --store $(DEMO)/models
	@echo; echo '$$ ocr-reconcile list manifests/example.yaml --store $(DEMO)/models'
	@$(BIN)/ocr-reconcile list manifests/example.yaml --store $(DEMO)/models
	@echo; echo '$$ ocr-reconcile backups --store $(DEMO)/models'
	@$(BIN)/ocr-reconcile backups --store $(DEMO)/models
	@echo; echo '$$ ocr-reconcile apply --yes manifests/example.yaml --store $(DEMO)/models   # again: a no-op'
	@$(BIN)/ocr-reconcile apply --yes manifests/example.yaml --store $(DEMO)/models

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench ansible
	$(BIN)/ruff format --check reconciler tests bench ansible

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n auto --durations=10

# Everything except the fault-injection suite (tests/reliability/): well under a minute.
pytest-fast: $(STAMP)
	$(BIN)/pytest -n auto --ignore=tests/reliability

# lint, typecheck and the tests at once; each one's output is printed whole when it ends (make -O)
test: $(STAMP)
	$(MAKE) -j3 -Otarget lint typecheck pytest

test-fast: $(STAMP)
	$(MAKE) -j3 -Otarget lint typecheck pytest-fast

# Speed, as ratios against baselines measured in the same run (docs/performance.md keeps the figures).
bench: $(STAMP)
	$(BIN)/python bench/bench_startup.py
	$(BIN)/python bench/bench_scan_plan.py
	$(BIN)/python bench/bench_moves.py
	$(BIN)/python bench/bench_hash.py
	$(BIN)/python bench/bench_download.py
	$(BIN)/python bench/bench_ansible.py

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
