# Every target creates .venv on first use and installs hamgan under constraints.txt.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo_digits

.PHONY: demo test test-fast bench clean

$(STAMP): setup.py constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ('$(PYTHON)' not found): set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests -q -ra --durations=15

# The quick inner loop: everything except the slow-marked tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not slow"

demo: $(STAMP)
	$(BIN)/python -m hamgan.cli.demo --model_dir=$(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python -m hamgan.cli.bench modules
	$(BIN)/python -m hamgan.cli.bench step
	$(BIN)/python -m hamgan.cli.bench eval

clean:
	rm -rf $(VENV) runs .pytest_cache
