# Two stacks, one virtual environment each (switching does not reinstall the other):
#   STACK=current (default)  TF 2.21 + tf-keras, hamgan's own FID/IS/KID, Python 3.11-3.13
#   STACK=tpu                TF 2.15 + TF-GAN (Cloud TPU VM runtime tpu-vm-tf-2.15.1-pjrt),
#                            Python 3.9-3.11
# Every target creates its stack's environment on first use, with the newest accepted
# Python on PATH (or PYTHON=/path/to/python3.X), and installs hamgan under the stack's
# constraints file, the one place where that stack is pinned.
STACK ?= current
PYTHON ?=
DEMO_DIR ?= runs/demo_mnist

ifeq ($(STACK),current)
  VENV := .venv-current
  CONSTRAINTS := constraints-current.txt
  EXTRAS := current,test
  PYTHONS := 3.13 3.12 3.11
else ifeq ($(STACK),tpu)
  VENV := .venv
  CONSTRAINTS := constraints.txt
  EXTRAS := tpu,test
  PYTHONS := 3.11 3.10 3.9
else
  $(error STACK=$(STACK) is not a stack; use STACK=current (the default; Python 3.11-3.13) or STACK=tpu (Python 3.9-3.11))
endif

ACCEPTED := STACK=current takes Python 3.11-3.13, STACK=tpu takes Python 3.9-3.11
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: env demo test test-fast bench device-check clean

# The Python check runs before anything is created, so a wrong one fails in seconds.
$(STAMP): setup.py $(CONSTRAINTS)
	@if [ ! -x $(BIN)/python ]; then \
	  py="$(PYTHON)"; \
	  if [ -z "$$py" ]; then \
	    for v in $(PYTHONS); do \
	      if python$$v -c "" >/dev/null 2>&1; then py=python$$v; break; fi; \
	      if command -v python$$v >/dev/null; then echo "skipping python$$v: it is on PATH but does not run"; fi; \
	    done; \
	  fi; \
	  if [ -z "$$py" ]; then \
	    echo "No Python for STACK=$(STACK) found (tried $(addprefix python,$(PYTHONS))). $(ACCEPTED); set PYTHON=/path/to/python3.X."; \
	    exit 1; \
	  fi; \
	  ver=$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || { \
	    echo "PYTHON=$$py does not run. $(ACCEPTED)."; exit 1; }; \
	  case " $(PYTHONS) " in \
	    *" $$ver "*) ;; \
	    *) echo "PYTHON=$$py is Python $$ver. $(ACCEPTED)."; exit 1 ;; \
	  esac; \
	  echo "Creating $(VENV) for STACK=$(STACK) with $$py (Python $$ver)"; \
	  "$$py" -m venv $(VENV); \
	fi
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Only the environment: the stack's virtual environment with everything installed.
env: $(STAMP)

# The suite keeps the data sets it prepares and the classifiers it caches inside the
# stack's environment: a user's ~/tensorflow_datasets and ~/.cache/hamgan stay untouched,
# and both stacks can run at once (.ci/run) without building the same files together.
TEST_ENV := TFDS_DATA_DIR=$(CURDIR)/$(VENV)/test-cache/tfds HAMGAN_CACHE=$(CURDIR)/$(VENV)/test-cache/hamgan

test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests -q -ra --durations=15

# The quick inner loop: everything except the slow-marked tests.
test-fast: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest tests -q -m "not slow"

demo: $(STAMP)
	$(BIN)/python -m hamgan.cli.demo --model_dir=$(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python -m hamgan.cli.bench modules
	$(BIN)/python -m hamgan.cli.bench step
	$(BIN)/python -m hamgan.cli.bench eval

# One Markdown report of absolute figures: the full check (about 8 min) on a GPU, a tiny
# version of the same (under 3 min) on a CPU.
device-check: $(STAMP)
	$(BIN)/python -m hamgan.cli.bench device-check --out=runs/device_check.md

clean:
	rm -rf .venv .venv-current runs .pytest_cache
