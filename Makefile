# The README's two commands: `make run` (set up + start the app) and `make test` (set up + run the tests).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
CIFAR10 ?= ../shared/data/cifar10-jpeg.zip
PORT ?= 8000

.PHONY: run test setup browser-deps lint bench fuzz clean

# The locked, hash-checked dependencies (requirements-dev.lock: the app's and the tests'), then the
# checkout itself, editable.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the real-browser tests (Playwright drives it; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -q && apt-get install -y -q chromium fonts-dejavu-core) || \
	  (sudo apt-get update -q && sudo apt-get install -y -q chromium fonts-dejavu-core); }

run: $(STAMP)
	$(BIN)/convscope serve --host $(HOST) --port $(PORT)

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q

# Nightly-style fuzzing: many more schemathesis and hypothesis examples than the default suite.
fuzz: $(STAMP)
	CONVSCOPE_FUZZ_EXAMPLES=200 $(BIN)/python -m pytest -q -s tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check app tests bench

bench: $(STAMP)
	$(BIN)/python bench/serve_latency.py
	$(BIN)/python bench/load.py --model cifarnet --clients 32 --seconds 60 --requests 10000
	$(BIN)/python bench/index_build.py --model cifarnet --data $(CIFAR10)
	$(BIN)/python bench/featvis.py --model cifarnet
	$(BIN)/python bench/live.py --seconds 10

clean:
	rm -rf $(VENV) .pytest_cache
