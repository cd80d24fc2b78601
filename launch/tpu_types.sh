# shellcheck shell=bash
# The TPU types launch/tpu.sh knows, their software versions (runtimes), and how the
# TensorFlow client reaches each one (sourced by launch/tpu.sh, not run).
#
# The number in a type's name counts TensorCores on v3, v4 and v5p and chips on
# v5litepod (v5e) and v6e. In every family one host holds at most 8 of them, so a
# larger number is a pod slice of several hosts.
#
# Runtimes follow Google's TPU software versions page (cloud.google.com/tpu/docs/runtimes):
# TensorFlow runtimes are named tpu-vm-tf-X.Y.Z[-pod][-pjrt|-se], '-pod' for a slice of
# several hosts; v2/v3 and v4 use them, and v5e and v5p take TensorFlow 2.15.0 and newer
# under the same names. Base images (v2-alpha-tpuv6e, v2-alpha-tpuv5, ...) carry no
# TensorFlow: there launch/tpu_vm_install.sh installs the tensorflow-tpu wheel pinned in
# constraints-tpu-wheel.txt.

TPU_KNOWN_TYPES="v3-8, v3-32, v3-64, v3-128, v3-256, v3-512, v3-1024, v3-2048; v4-N and v5p-N for N a multiple of 8 (v4-8 to v4-4096, v5p-8 to v5p-12288); v5litepod-1, v5litepod-4, v5litepod-8, v5litepod-16, v5litepod-32, v5litepod-64, v5litepod-128, v5litepod-256; v6e-1, v6e-4, v6e-8"

# hg_pinned_version FILE PACKAGE: the version pinned as PACKAGE==VERSION in FILE.
hg_pinned_version() {
  sed -n "s/^$2==\([^[:space:]#;]*\).*/\1/p" "$1" | head -n 1
}

# hg_tpu_type TYPE: checks TYPE and sets TPU_FAMILY and TPU_POD (1 for a slice
# of several hosts). Unknown types are refused with the list of known ones.
# shellcheck disable=SC2034  # read by launch/tpu.sh
hg_tpu_type() {
  local type=$1 family="" size=0 known=0
  if [[ $type =~ ^(v3|v4|v5p|v5litepod|v6e)-([1-9][0-9]*)$ ]]; then
    family=${BASH_REMATCH[1]}
    size=${BASH_REMATCH[2]}
    case $family in
      v3) [[ " 8 32 64 128 256 512 1024 2048 " != *" $size "* ]] || known=1 ;;
      v4) if ((size % 8 == 0 && size <= 4096)); then known=1; fi ;;
      v5p) if ((size % 8 == 0 && size <= 12288)); then known=1; fi ;;
      v5litepod | v6e) [[ " 1 4 8 16 32 64 128 256 " != *" $size "* ]] || known=1 ;;
    esac
  fi
  if [[ $known == 1 && $family == v6e ]] && ((size > 8)); then
    hg_die "--accelerator=$type is a v6e slice of several hosts. On v6e TensorFlow comes from the tensorflow-tpu wheel on a base image, and a slice of such hosts needs a TPU runtime service set up on every host, which this launcher does not do. Use --accelerator=v6e-8 (one host), or a v4, v5p or v5litepod slice on a tpu-vm-tf runtime."
  fi
  if [[ $known != 1 ]]; then
    local hint=""
    if [[ $type == v5e-* ]]; then
      hint=" (v5e types are named v5litepod-N, e.g. --accelerator=v5litepod-8)"
    fi
    hg_die "--accelerator=$type is not a TPU type this launcher knows$hint. Known types: $TPU_KNOWN_TYPES."
  fi
  TPU_FAMILY=$family
  TPU_POD=0
  if ((size > 8)); then
    TPU_POD=1
  fi
}

# hg_tpu_default_runtime FAMILY POD TF_VERSION: the runtime for a type, TF_VERSION being
# the tpu stack's TensorFlow. v6e gets its base image (see the note at the top).
hg_tpu_default_runtime() {
  if [[ $1 == v6e ]]; then
    echo "v2-alpha-tpuv6e"
  elif [[ $2 == 1 ]]; then
    echo "tpu-vm-tf-$3-pod-pjrt"
  else
    echo "tpu-vm-tf-$3-pjrt"
  fi
}

# hg_tpu_check_runtime TYPE POD RUNTIME TF_VERSION: refuses a runtime that cannot serve
# the type or whose TensorFlow is not the tpu stack's, naming the one to pass instead.
hg_tpu_check_runtime() {
  local type=$1 pod=$2 runtime=$3 tf=$4 found
  if [[ $runtime == tpu-vm-tf-* ]]; then
    found=${runtime#tpu-vm-tf-}
    found=${found%%-*}
    local fix=tpu-vm-tf-$tf-pjrt
    if [[ $pod == 1 ]]; then
      fix=tpu-vm-tf-$tf-pod-pjrt
    fi
    if [[ $found != "$tf" ]]; then
      hg_die "--runtime_version=$runtime carries TensorFlow $found, but hamgan's tpu stack is TensorFlow $tf (tensorflow==$tf in constraints.txt), and pip would replace the runtime's TPU build of TensorFlow to reconcile them. Pass --runtime_version=$fix, or leave the flag out."
    fi
    if [[ $pod == 1 && $runtime != *-pod* ]]; then
      hg_die "--accelerator=$type is a pod slice but --runtime_version=$runtime is not a -pod runtime; pass --runtime_version=$fix."
    fi
    if [[ $pod == 0 && $runtime == *-pod* ]]; then
      hg_die "--accelerator=$type is one host but --runtime_version=$runtime is a -pod runtime (for slices of several hosts); pass --runtime_version=$fix."
    fi
  elif [[ $pod == 1 ]]; then
    hg_die "--runtime_version=$runtime is a base image without TensorFlow, and --accelerator=$type is a slice of several hosts: this launcher sets up TensorFlow on a base image for one host only. Pass --runtime_version=tpu-vm-tf-$tf-pod-pjrt."
  fi
}

# hg_tpu_client VM POD RUNTIME: how hamgan-train (or hamgan-eval) reaches the TPU of VM.
# Sets TPU_FLAG (the --tpu value) and TPU_ENV (the environment it runs with: a shell
# string, expanded on the VM) and TPU_ROUTE (runtime: the image's own TensorFlow;
# wheel: the tensorflow-tpu wheel that tpu_vm_install.sh puts on a base image).
# - A pod slice has one client, on worker 0, that drives every host's TPU through the
#   TPU runtime service on each host. It addresses the slice by name and must not load
#   the TPU library itself: TPU_LOAD_LIBRARY=0.
# - One host: --tpu=local, and on a -pjrt runtime TensorFlow's PJRT plugin is turned on
#   with the TPU library's path (/lib/libtpu.so on tpu-vm-tf images, the libtpu
#   package's library with the wheel).
# shellcheck disable=SC2034  # read by launch/tpu.sh
hg_tpu_client() {
  local vm=$1 pod=$2 runtime=$3
  TPU_ROUTE=runtime
  if [[ $runtime != tpu-vm-tf-* ]]; then
    TPU_ROUTE=wheel
  fi
  if [[ $pod == 1 ]]; then
    TPU_FLAG=$vm
    TPU_ENV="TPU_LOAD_LIBRARY=0"
  elif [[ $TPU_ROUTE == wheel ]]; then
    TPU_FLAG=local
    # shellcheck disable=SC2016  # expanded on the VM
    TPU_ENV='NEXT_PLUGGABLE_DEVICE_USE_C_API=true TF_PLUGGABLE_DEVICE_LIBRARY_PATH="$(python3 -c '"'"'import libtpu, os; print(os.path.dirname(libtpu.__file__))'"'"')/libtpu.so"'
  elif [[ $runtime == *-pjrt ]]; then
    TPU_FLAG=local
    TPU_ENV="NEXT_PLUGGABLE_DEVICE_USE_C_API=true TF_PLUGGABLE_DEVICE_LIBRARY_PATH=/lib/libtpu.so"
  else
    TPU_FLAG=local
    TPU_ENV=""
  fi
}
