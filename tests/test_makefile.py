"""The Makefile's choice of stack and Python: a wrong one fails in seconds, saying why."""
import os
import shutil
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCEPTED = "STACK=current takes Python 3.11-3.13, STACK=tpu takes Python 3.9-3.11"


@pytest.fixture
def checkout(tmp_path):
  """The files make reads, in a folder of their own (no environment exists there)."""
  for name in ("Makefile", "setup.py", "constraints.txt", "constraints-current.txt"):
    shutil.copy(os.path.join(ROOT, name), tmp_path / name)
  return tmp_path


def _make(checkout, *args):
  start = time.time()
  done = subprocess.run(["make", "--no-print-directory", *args], cwd=checkout,
                        capture_output=True, text=True, timeout=60, check=False)
  return done.returncode, done.stdout + done.stderr, time.time() - start


def _fake_python(checkout, version):
  """An executable that answers the Makefile's version question with `version`."""
  path = checkout / f"python{version}"
  path.write_text(f"#!/bin/sh\necho {version}\n")
  path.chmod(0o755)
  return str(path)


@pytest.mark.parametrize("stack,version", [("current", "3.10"), ("tpu", "3.12")])
def test_a_python_outside_the_stack_fails_at_once_naming_both_ranges(checkout, stack,
                                                                       version):
  code, out, took = _make(checkout, "env", f"STACK={stack}",
                          f"PYTHON={_fake_python(checkout, version)}")
  assert code != 0
  assert f"is Python {version}. {ACCEPTED}." in out, out
  assert not (checkout / (".venv-current" if stack == "current" else ".venv")).exists()
  assert took < 10, took


def test_a_python_that_does_not_run_fails_at_once(checkout):
  code, out, _ = _make(checkout, "env", "PYTHON=/nonexistent/python3.12")
  assert code != 0
  assert "PYTHON=/nonexistent/python3.12 does not run" in out and ACCEPTED in out, out


def test_an_unknown_stack_is_refused_with_the_choices(checkout):
  code, out, _ = _make(checkout, "env", "STACK=gpu")
  assert code != 0
  assert "STACK=gpu is not a stack" in out and "STACK=tpu" in out, out


def test_no_accepted_python_on_path_names_the_versions(checkout):
  # A PATH with make's own tools but no python3.X of either stack.
  bin_dir = checkout / "bin"
  bin_dir.mkdir()
  for tool in ("sh", "make", "echo", "touch"):
    found = shutil.which(tool)
    if found:
      os.symlink(found, bin_dir / tool)
  start = time.time()
  done = subprocess.run(["make", "--no-print-directory", "env", "STACK=tpu"], cwd=checkout,
                        capture_output=True, text=True, timeout=60, check=False,
                        env={"PATH": str(bin_dir), "HOME": str(checkout)})
  out = done.stdout + done.stderr
  assert done.returncode != 0
  assert "No Python for STACK=tpu found (tried python3.11 python3.10 python3.9)" in out, out
  assert ACCEPTED in out and time.time() - start < 10
