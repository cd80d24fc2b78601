"""launch/tpu_vm_install.sh on a fake TPU VM: which TensorFlow it keeps or installs."""
import json
import os
import re
import shlex
import sys

from launch_harness import TPU, VM_INSTALL, _run


def _fake_vm(tmp_path, tf_version=None, clobber=False):
  """A TPU VM host's Python: the test's interpreter, with a fake `tensorflow` module (or
  none) and a fake pip (`python3 -m pip`) that records its argv and installs nothing,
  except that `tensorflow-tpu==V` makes the fake TensorFlow V and clobber=True makes
  every install replace it (as pip replacing the TPU build would)."""
  site = tmp_path / "site"
  (site / "pip").mkdir(parents=True)
  tf = site / "tensorflow" / "__init__.py"
  tf.parent.mkdir()
  if tf_version:
    tf.write_text(f"__version__ = {tf_version!r}\n")
  else:   # hides the test environment's own TensorFlow
    tf.write_text("raise ModuleNotFoundError(\"No module named 'tensorflow'\")\n")
  (site / "pip" / "__init__.py").write_text("")
  (site / "pip" / "__main__.py").write_text(
      "import json, os, sys\n"
      "args = sys.argv[1:]\n"
      "with open(os.environ['FAKE_PIP_LOG'], 'a') as f:\n"
      "  f.write(json.dumps(args) + '\\n')\n"
      f"tf = {str(tf)!r}\n"
      "if args[:1] == ['list']:\n"
      "  print('absl-py==2.0.0')\n"
      "  print('tensorflow-gan==2.1.0' if os.path.exists(tf + '.gan') else 'six==1.16.0')\n"
      "elif args[:1] == ['install']:\n"
      "  if 'tensorflow-gan' in args:\n"
      "    open(tf + '.gan', 'w').close()\n"
      "  for a in args:\n"
      "    if a.startswith('tensorflow-tpu=='):\n"
      "      os.makedirs(os.path.dirname(tf), exist_ok=True)\n"
      "      open(tf, 'w').write('__version__ = %r\\n' % a.split('==')[1])\n"
      f"  if {clobber!r}:\n"
      "    open(tf, 'w').write(\"__version__ = '2.21.0'\\n\")\n")
  bindir = tmp_path / "vmbin"
  bindir.mkdir()
  (bindir / "python3").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
  (bindir / "python3").chmod(0o755)
  env = dict(PYTHONPATH=str(site), FAKE_PIP_LOG=str(tmp_path / "pip.log"),
             PATH=str(bindir) + os.pathsep + os.environ["PATH"])
  return env, tf


def _pip_calls(tmp_path):
  log = tmp_path / "pip.log"
  return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


# A requirement that would install or replace TensorFlow: any TensorFlow distribution.
TF_REQUIREMENT = re.compile(r"^(tensorflow|tensorflow-tpu|tensorflow-cpu|tf-nightly\S*)"
                            r"(\s*[=<>!~\[;].*)?$", re.IGNORECASE)


def _no_tensorflow_touched(installs):
  for call in installs:
    assert "--user" in call
    assert not {"-U", "--upgrade", "--force-reinstall", "--ignore-installed"} & set(call), call
    assert not [a for a in call if TF_REQUIREMENT.match(a)], call


def test_vm_install_stops_on_the_wrong_tensorflow(tmp_path):
  env, _ = _fake_vm(tmp_path, tf_version="2.16.1")
  res = _run(VM_INSTALL, tmp_path=tmp_path, **env)
  assert res.returncode == 2, res.stdout + res.stderr
  for fragment in ("this host's TensorFlow is 2.16.1", "expects 2.15.1",
                   "tensorflow==2.15.1 in constraints.txt", "Nothing was installed",
                   "--runtime_version=tpu-vm-tf-2.15.1-pjrt"):
    assert fragment in res.stderr
  assert [c for c in _pip_calls(tmp_path) if c[0] == "install"] == []
  # No TensorFlow at all on a runtime VM: the same stop, saying it does not import.
  env, _ = _fake_vm(tmp_path / "none")
  res = _run(VM_INSTALL, tmp_path=tmp_path, **env)
  assert res.returncode == 2 and "TensorFlow does not import" in res.stderr
  assert "ModuleNotFoundError" in res.stderr


def test_vm_install_leaves_the_runtime_tensorflow_untouched(tmp_path):
  env, tf = _fake_vm(tmp_path, tf_version="2.15.1")
  before = (tf.read_text(), tf.stat().st_mtime_ns)
  res = _run(VM_INSTALL, "--tensorflow=runtime", "--constraints=constraints.txt",
             "--extras=tpu", tmp_path=tmp_path, **env)
  assert res.returncode == 0, res.stdout + res.stderr
  assert (tf.read_text(), tf.stat().st_mtime_ns) == before
  installs = [c for c in _pip_calls(tmp_path) if c[0] == "install"]
  _no_tensorflow_touched(installs)
  assert installs[0] == ["install", "--user", "-q", "--no-deps", "-c", "constraints.txt",
                         "tf-keras", "tensorflow-hub"]
  assert installs[1][:5] == ["install", "--user", "-q", "-c", "constraints.txt"]
  assert "tensorflow-gan" in installs[1] and "scipy" in installs[1]   # the tpu extra, hamgan's
  assert installs[2] == ["install", "--user", "-q", "--no-deps", "-e", "."]
  assert len(installs) == 3
  assert "TensorFlow 2.15.1 at" in res.stdout and ": unchanged." in res.stdout
  assert "hamgan 0.1.0 installed (editable)" in res.stdout
  assert "pip installed or changed:\n  tensorflow-gan==2.1.0" in res.stdout


def test_vm_install_detects_tensorflow_replaced_during_install(tmp_path):
  env, _ = _fake_vm(tmp_path, tf_version="2.15.1", clobber=True)
  res = _run(VM_INSTALL, tmp_path=tmp_path, **env)
  assert res.returncode == 2
  assert "TensorFlow changed during the install: it was 2.15.1" in res.stderr
  assert "is now 2.21.0" in res.stderr


def test_vm_install_wheel_route_installs_tensorflow_tpu_first(tmp_path):
  env, tf = _fake_vm(tmp_path)   # a base image: no TensorFlow
  res = _run(VM_INSTALL, "--tensorflow=wheel", tmp_path=tmp_path, **env)
  assert res.returncode == 0, res.stdout + res.stderr
  installs = [c for c in _pip_calls(tmp_path) if c[0] == "install"]
  assert installs[0] == ["install", "--user", "-q", "-c", "constraints-tpu-wheel.txt",
                         "tensorflow-tpu==2.20.0"]
  _no_tensorflow_touched(installs[1:])
  assert installs[1] == ["install", "--user", "-q", "--no-deps", "-c",
                         "constraints-tpu-wheel.txt", "tf-keras", "tensorflow-hub"]
  assert "importlib-resources" in installs[2] and "tensorflow-gan" not in installs[2]
  assert "2.20.0" in tf.read_text() and "TensorFlow 2.20.0 at" in res.stdout
  # A base image that has another TensorFlow already is refused, not overwritten.
  env, _ = _fake_vm(tmp_path / "other", tf_version="2.18.0")
  res = _run(VM_INSTALL, "--tensorflow=wheel", tmp_path=tmp_path, **env)
  assert res.returncode == 2 and "this host's TensorFlow is 2.18.0" in res.stderr
  assert "tensorflow-tpu==2.20.0 in constraints-tpu-wheel.txt" in res.stderr


def test_vm_install_help_and_bad_arguments(tmp_path):
  res = _run(VM_INSTALL, "--help", tmp_path=tmp_path)
  assert res.returncode == 0 and "--tensorflow=runtime|wheel" in res.stdout
  res = _run(VM_INSTALL, "--tensorflow=pip", tmp_path=tmp_path)
  assert res.returncode == 2 and "--tensorflow=pip is not one of runtime, wheel" in res.stderr
  res = _run(VM_INSTALL, "--constraints=nope.txt", tmp_path=tmp_path)
  assert res.returncode == 2 and "constraints file 'nope.txt'" in res.stderr
