#!/usr/bin/env bash
# The former name of launch/tpu.sh, kept so that earlier commands still work: the same
# commands and flags, with the TPU VM name defaulting to hamgan-v3 as it did here.
# See launch/README.md.
set -euo pipefail

export HAMGAN_TPU_NAME=${HAMGAN_TPU_NAME:-hamgan-v3}
echo "note: launch/tpu_v3.sh is launch/tpu.sh with --tpu_name defaulting to hamgan-v3." >&2
exec bash "$(dirname "${BASH_SOURCE[0]}")/tpu.sh" "$@"
