#!/usr/bin/env bash
# Installs hamgan on a TPU VM host without touching the VM's TensorFlow. Run on the VM,
# from the hamgan checkout (launch/tpu.sh does it on every host). See launch/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash launch/tpu_vm_install.sh [--tensorflow=runtime|wheel] [--constraints=FILE]
                                     [--extras=LIST] [--python=PYTHON]

Installs hamgan (editable, from this checkout) and its extras with pip --user under
the stack's constraints file, leaving TensorFlow as it is:
  1. TensorFlow must import and be the version FILE pins: tensorflow==X with
     --tensorflow=runtime (a tpu-vm-tf runtime's own TPU build), tensorflow-tpu==X
     with --tensorflow=wheel (a base image: the wheel is installed first if no
     TensorFlow is there). Otherwise it stops, naming both versions and the fix,
     before installing anything.
  2. hamgan and the packages that declare a TensorFlow requirement (tf-keras,
     tensorflow-hub) are installed with --no-deps, so pip never brings the
     registry's tensorflow wheel; the other requirements with their dependencies.
  3. TensorFlow's version, location and files must be as before; then it prints
     what pip installed or changed.

Flags:
  --tensorflow=runtime|wheel  Where TensorFlow comes from. Default: runtime.
  --constraints=FILE          The stack's constraints file. Default: constraints.txt
                              (runtime) or constraints-tpu-wheel.txt (wheel).
  --extras=LIST               hamgan's extras, comma-separated. Default: tpu
                              (runtime) or current (wheel).
  --python=PYTHON             The Python to install into. Default: python3.
  -h, --help                  Show this help.
EOF
}

die() {
  echo "error: $*" >&2
  exit 2
}

TENSORFLOW=runtime
CONSTRAINTS=""
EXTRAS=""
PYTHON=python3
for arg in "$@"; do
  case $arg in
    -h | --help) usage; exit 0 ;;
    --tensorflow=*) TENSORFLOW=${arg#*=} ;;
    --constraints=*) CONSTRAINTS=${arg#*=} ;;
    --extras=*) EXTRAS=${arg#*=} ;;
    --python=*) PYTHON=${arg#*=} ;;
    *) die "unknown argument '$arg'; see --help." ;;
  esac
done
case $TENSORFLOW in
  runtime) TF_DIST=tensorflow; CONSTRAINTS=${CONSTRAINTS:-constraints.txt}; EXTRAS=${EXTRAS:-tpu} ;;
  wheel) TF_DIST=tensorflow-tpu; CONSTRAINTS=${CONSTRAINTS:-constraints-tpu-wheel.txt}; EXTRAS=${EXTRAS:-current} ;;
  *) die "--tensorflow=$TENSORFLOW is not one of runtime, wheel." ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=$(pwd)
[[ -f $CONSTRAINTS ]] || die "constraints file '$CONSTRAINTS' is not in $SRC; pass --constraints=FILE of this checkout."
EXPECTED=$(sed -n "s/^$TF_DIST==\([^[:space:]#;]*\).*/\1/p" "$CONSTRAINTS" | head -n 1)
[[ -n $EXPECTED ]] || die "$CONSTRAINTS pins no $TF_DIST==VERSION, so the TensorFlow this stack expects is unknown; pass the stack's constraints file."
PIP=("$PYTHON" -m pip)

# Prints 'version<TAB>module folder<TAB>mtime of __init__.py<TAB>distributions', or
# 'ERROR<TAB>why'. TPU_LOAD_LIBRARY=0: importing must not take the host's TPU.
tf_fingerprint() {
  local out status=0 err
  err=$(mktemp)
  out=$(TPU_LOAD_LIBRARY=0 "$PYTHON" - 2>"$err" <<'PY'
import os
try:
  import tensorflow as tf
except Exception as e:  # ImportError, or a broken build's error at import
  print("HAMGAN_TF\tERROR\t%s: %s" % (type(e).__name__, e))
  raise SystemExit(0)
init = os.path.realpath(tf.__file__)
try:
  from importlib.metadata import packages_distributions
  dists = ",".join(sorted(set(packages_distributions().get("tensorflow", []))))
except ImportError:  # Python < 3.10
  dists = ""
print("HAMGAN_TF\t%s\t%s\t%d\t%s" % (tf.__version__, os.path.dirname(init),
                                      os.stat(init).st_mtime_ns, dists or "-"))
PY
) || status=$?
  if ((status != 0)); then
    printf 'ERROR\tPython exited with status %s while importing TensorFlow (a crash at import, as tensorflow#82208 reports for one runtime): %s\n' "$status" "$(tail -n 1 "$err")"
  else
    grep '^HAMGAN_TF' <<<"$out" | tail -n 1 | cut -f 2-
  fi
  rm -f "$err"
}

fix_hint() {
  if [[ $TENSORFLOW == runtime ]]; then
    echo "create the TPU VM with --runtime_version=tpu-vm-tf-$EXPECTED-pjrt (tpu-vm-tf-$EXPECTED-pod-pjrt for a slice of several hosts): launch/tpu.sh delete, then launch/tpu.sh train with --runtime_version left out"
  else
    echo "create the TPU VM from a base image without TensorFlow (e.g. --runtime_version=v2-alpha-tpuv6e): launch/tpu.sh delete, then launch/tpu.sh train"
  fi
}

IFS=$'\t' read -r found tf_dir tf_mtime tf_dists <<<"$(tf_fingerprint)"
if [[ $TENSORFLOW == wheel && $found == ERROR ]]; then
  echo "No TensorFlow on this host: installing $TF_DIST==$EXPECTED ($CONSTRAINTS)."
  "${PIP[@]}" install --user -q -c "$CONSTRAINTS" "$TF_DIST==$EXPECTED"
  IFS=$'\t' read -r found tf_dir tf_mtime tf_dists <<<"$(tf_fingerprint)"
fi
if [[ $found == ERROR ]]; then
  die "TensorFlow does not import with $PYTHON on this host ($tf_dir). hamgan's stack expects TensorFlow $EXPECTED ($TF_DIST==$EXPECTED in $CONSTRAINTS). Nothing was installed. Fix: $(fix_hint)."
fi
if [[ $found != "$EXPECTED" ]]; then
  die "this host's TensorFlow is $found ($tf_dir), but hamgan's stack expects $EXPECTED ($TF_DIST==$EXPECTED in $CONSTRAINTS); installing would make pip replace it. Nothing was installed. Fix: $(fix_hint)."
fi
echo "TensorFlow $found at $tf_dir (distribution: $tf_dists): the version $CONSTRAINTS expects; it is left as it is."

# hamgan's own requirements and those of its extras, read from setup.py, without the
# TensorFlow ones (installed with --no-deps below) and TensorFlow itself.
requirements=$("$PYTHON" - "$EXTRAS" <<'PY'
import re, runpy, sys
import setuptools
extras = [e for e in sys.argv[1].split(",") if e]
seen = {}
setuptools.setup = lambda **kw: seen.update(kw)
sys.argv = ["setup.py"]
runpy.run_path("setup.py", run_name="__main__")
reqs = list(seen["install_requires"])
for extra in extras:
  if extra not in seen["extras_require"]:
    raise SystemExit("error: hamgan has no extra %r (it has %s)" % (extra, ", ".join(seen["extras_require"])))
  reqs += seen["extras_require"][extra]
for r in reqs:
  name = re.match(r"[A-Za-z0-9._-]+", r).group(0).lower().replace("_", "-")
  if name not in ("tensorflow", "tensorflow-tpu", "tf-keras", "tensorflow-hub"):
    print(r)
PY
)
mapfile -t requirements <<<"$requirements"

before=$("${PIP[@]}" list --format=freeze 2>/dev/null | LC_ALL=C sort)
# tf-keras (>= 2.16) and tensorflow-hub (through tf-keras) require the package named
# tensorflow, which a TPU build may not be called: with their dependencies pip would
# install the registry's tensorflow over the VM's. Their other requirements come with
# TensorFlow or from the list below.
"${PIP[@]}" install --user -q --no-deps -c "$CONSTRAINTS" tf-keras tensorflow-hub
"${PIP[@]}" install --user -q -c "$CONSTRAINTS" "${requirements[@]}"
"${PIP[@]}" install --user -q --no-deps -e .
after=$("${PIP[@]}" list --format=freeze 2>/dev/null | LC_ALL=C sort)

IFS=$'\t' read -r now now_dir now_mtime now_dists <<<"$(tf_fingerprint)"
if [[ $now != "$found" || $now_dir != "$tf_dir" || $now_mtime != "$tf_mtime" || $now_dists != "$tf_dists" ]]; then
  die "TensorFlow changed during the install: it was $found at $tf_dir (distribution $tf_dists) and is now $now at $now_dir (distribution $now_dists). A package's requirement made pip replace it; the TPU build is gone from this host. Fix: $(fix_hint), and report which package pulled TensorFlow in (pip list)."
fi
hamgan_version=$(cd / && "$PYTHON" -c 'import hamgan; print(hamgan.__version__)') ||
  die "hamgan does not import with $PYTHON after the install (the traceback is above); check that pip's --user site is on its path ($PYTHON -m site)."
echo "hamgan $hamgan_version installed (editable) from $SRC with extras '$EXTRAS' under $CONSTRAINTS."
echo "TensorFlow $now at $now_dir: unchanged."
echo "pip installed or changed:"
changed=$(LC_ALL=C comm -13 <(echo "$before") <(echo "$after"))
if [[ -n $changed ]]; then
  while read -r line; do
    echo "  $line"
  done <<<"$changed"
else
  echo "  nothing (all were already there)"
fi
