#!/usr/bin/env bash
# Runs a hamgan experiment on a Cloud TPU VM (v3-8 by default). See launch/README.md.
set -euo pipefail

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LAUNCH_DIR/.." && pwd)
# shellcheck source=launch/common.sh disable=SC1091
source "$LAUNCH_DIR/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_v3.sh COMMAND [flags]

Commands:
  create   Create the TPU VM, or reuse it if it exists (starting it if stopped,
           re-creating it if preempted), and install hamgan on it.
  train    create, then start hamgan-train for the experiment in a detached tmux
           session on the VM, and print how to follow it.
  eval     Start the evaluation watcher (hamgan-eval --watch) on the same model_dir
           in a detached tmux session (on --eval_tpu_name; default the training VM).
  status   Show the VM's state, its tmux sessions and the last log lines.
  delete   Delete the VM (the bucket and its runs stay).

Flags (each can also be set by the environment variable in brackets):
  --project=ID          Google Cloud project. Required. [HAMGAN_PROJECT]
  --zone=ZONE           Zone with v3 TPUs, e.g. europe-west4-a or us-central1-a.
                        Required. [HAMGAN_ZONE]
  --bucket=NAME         GCS bucket (with or without gs://) holding runs/ and tfds/.
                        Required for train and eval. [HAMGAN_BUCKET]
  --experiment=NAME     Gin experiment: gin_configs/NAME.gin, e.g.
                        imagenet128_hamgan_baby. Required for train and eval.
                        [HAMGAN_EXPERIMENT]
  --run_name=NAME       Run folder: model_dir is gs://BUCKET/runs/NAME.
                        Default: the experiment name. [HAMGAN_RUN_NAME]
  --data_dir=GCS_PATH   tfds data_dir (training data, and the real images of the
                        evaluation). Default: gs://BUCKET/tfds. [HAMGAN_DATA_DIR]
  --data_dir_binding=B  Gin binding that gives hamgan-train the data_dir.
                        Default: train.data_dir. [HAMGAN_DATA_DIR_BINDING]
  --gin_param=BINDING   Extra gin binding for hamgan-train, e.g.
                        "train.num_steps = 1000"; repeatable. [HAMGAN_GIN_PARAMS,
                        bindings separated by ';']
  --eval_args=ARGS      Extra flags for hamgan-eval, split on spaces, e.g.
                        "--num_samples=10000". [HAMGAN_EVAL_ARGS]
  --tpu_name=NAME       TPU VM name. Default: hamgan-v3. [HAMGAN_TPU_NAME]
  --eval_tpu_name=NAME  VM that runs the evaluation watcher. Default: the training
                        VM (the watcher then runs on its host CPU, as the TPU is
                        held by training). Another VM is created if needed and the
                        watcher uses its TPU (--tpu=local). [HAMGAN_EVAL_TPU_NAME]
  --accelerator=TYPE    TPU type: v3-8 (one host, the default) or a pod slice such
                        as v3-32 (4 hosts; every command then runs on all of them,
                        the same command on each, and host 0 writes the run's
                        files). [HAMGAN_ACCELERATOR]
  --runtime_version=V   TPU software version; must match the TensorFlow pin in
                        constraints.txt so pip keeps the VM's TPU build of TF.
                        Default: tpu-vm-tf-2.15.1-pjrt, or
                        tpu-vm-tf-2.15.1-pod-pjrt for a pod slice.
                        [HAMGAN_RUNTIME_VERSION]
  --spot                Create a Spot VM (cheaper, can be reclaimed; training
                        resumes from its last checkpoint when restarted).
                        [HAMGAN_SPOT=1]
  --preemptible         Create a preemptible VM (the older form of --spot).
                        [HAMGAN_PREEMPTIBLE=1]
  --source=copy|git     How hamgan reaches the VM: copy (a git archive of HEAD of
                        this checkout; commit first) or git (clone --repo at --ref).
                        Default: copy. [HAMGAN_SOURCE]
  --repo=URL            Repository to clone with --source=git. [HAMGAN_REPO]
  --ref=REF             Branch or tag to clone with --source=git. Default: main.
                        [HAMGAN_REF]
  --skip_install        Do not (re)install hamgan on a VM that already has it.
                        [HAMGAN_SKIP_INSTALL=1]
  --dry_run             Print every command (gcloud, git, hamgan-*) instead of
                        running it. [HAMGAN_DRY_RUN=1]
  -h, --help            Show this help.

Example:
  launch/tpu_v3.sh train --project=my-proj --zone=europe-west4-a \
      --bucket=my-bucket --experiment=imagenet128_hamgan_baby --spot
EOF
}

PROJECT=${HAMGAN_PROJECT:-}
ZONE=${HAMGAN_ZONE:-}
BUCKET=${HAMGAN_BUCKET:-}
EXPERIMENT=${HAMGAN_EXPERIMENT:-}
RUN_NAME=${HAMGAN_RUN_NAME:-}
DATA_DIR=${HAMGAN_DATA_DIR:-}
DATA_DIR_BINDING=${HAMGAN_DATA_DIR_BINDING:-train.data_dir}
EVAL_ARGS=${HAMGAN_EVAL_ARGS:-}
TPU_NAME=${HAMGAN_TPU_NAME:-hamgan-v3}
EVAL_TPU_NAME=${HAMGAN_EVAL_TPU_NAME:-}
ACCELERATOR=${HAMGAN_ACCELERATOR:-v3-8}
RUNTIME_VERSION=${HAMGAN_RUNTIME_VERSION:-}
SPOT=${HAMGAN_SPOT:-0}
PREEMPTIBLE=${HAMGAN_PREEMPTIBLE:-0}
SOURCE=${HAMGAN_SOURCE:-copy}
REPO=${HAMGAN_REPO:-}
REF=${HAMGAN_REF:-main}
SKIP_INSTALL=${HAMGAN_SKIP_INSTALL:-0}
DRY_RUN=${HAMGAN_DRY_RUN:-0}
hg_boolean_flag() {
  case $1 in
    --spot) SPOT=1 ;;
    --preemptible) PREEMPTIBLE=1 ;;
    --skip_install) SKIP_INSTALL=1 ;;
    *) return 1 ;;
  esac
}

hg_set_flag() {
  case $1 in
    --project) PROJECT=$2 ;;
    --zone) ZONE=$2 ;;
    --bucket) BUCKET=$2 ;;
    --experiment) EXPERIMENT=$2 ;;
    --run_name) RUN_NAME=$2 ;;
    --data_dir) DATA_DIR=$2 ;;
    --data_dir_binding) DATA_DIR_BINDING=$2 ;;
    --gin_param) GIN_PARAMS+=("$2") ;;
    --eval_args) EVAL_ARGS=$2 ;;
    --tpu_name) TPU_NAME=$2 ;;
    --eval_tpu_name) EVAL_TPU_NAME=$2 ;;
    --accelerator) ACCELERATOR=$2 ;;
    --runtime_version) RUNTIME_VERSION=$2 ;;
    --source) SOURCE=$2 ;;
    --repo) REPO=$2 ;;
    --ref) REF=$2 ;;
    *) hg_die "unknown flag '$1'; see --help for the flags." ;;
  esac
}

hg_parse_args "$@"

case $COMMAND in
  create | train | eval | status | delete) ;;
  "") usage >&2; hg_die "no command given; expected one of create, train, eval, status, delete." ;;
  *) hg_die "unknown command '$COMMAND'; expected one of create, train, eval, status, delete." ;;
esac

hg_require "$PROJECT" project --project HAMGAN_PROJECT
hg_require "$ZONE" zone --zone HAMGAN_ZONE
if [[ $COMMAND == train || $COMMAND == eval ]]; then
  hg_require "$BUCKET" bucket --bucket HAMGAN_BUCKET
  hg_require "$EXPERIMENT" experiment --experiment HAMGAN_EXPERIMENT
fi
case $SOURCE in
  copy) ;;
  git) hg_require "$REPO" repo --repo HAMGAN_REPO ;;
  *) hg_die "--source=$SOURCE is not one of copy, git; pass --source=copy or --source=git." ;;
esac
if [[ $SPOT == 1 && $PREEMPTIBLE == 1 ]]; then
  hg_die "--spot and --preemptible both given; pass only one of them."
fi

for vm in "$TPU_NAME" "${EVAL_TPU_NAME:-$TPU_NAME}"; do
  if [[ ! $vm =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
    lower=${vm,,}
    hg_die "TPU VM name '$vm' is not valid: use lowercase letters, digits and hyphens, starting with a letter (e.g. '${lower//[^a-z0-9]/-}')."
  fi
done

if [[ ! $ACCELERATOR =~ ^v[0-9]+[a-z]*-([0-9]+)$ ]]; then
  hg_die "--accelerator=$ACCELERATOR is not a TPU type such as v3-8 or v3-32."
fi
# More than 8 cores is a pod slice: several hosts, the -pod runtime, and the TPU
# addressed by name (each host's hamgan-train joins the whole slice).
POD=0
if ((BASH_REMATCH[1] > 8)); then
  POD=1
fi
if [[ -z $RUNTIME_VERSION ]]; then
  if [[ $POD == 1 ]]; then
    RUNTIME_VERSION="tpu-vm-tf-2.15.1-pod-pjrt"
  else
    RUNTIME_VERSION="tpu-vm-tf-2.15.1-pjrt"
  fi
fi
if [[ $POD == 1 && $RUNTIME_VERSION != *-pod* ]]; then
  hg_die "--accelerator=$ACCELERATOR is a pod slice but --runtime_version=$RUNTIME_VERSION is not a -pod runtime; pass e.g. --runtime_version=tpu-vm-tf-2.15.1-pod-pjrt."
fi
BUCKET=$(hg_bucket_name "$BUCKET")
RUN_NAME=${RUN_NAME:-$EXPERIMENT}
DATA_DIR=${DATA_DIR:-gs://$BUCKET/tfds}
MODEL_DIR=gs://$BUCKET/runs/$RUN_NAME
EVAL_TPU_NAME=${EVAL_TPU_NAME:-$TPU_NAME}
GCLOUD_TPU=(gcloud compute tpus tpu-vm)
WHERE=(--project="$PROJECT" --zone="$ZONE")
# Remote paths (the checkout, the logs) and pip's --user scripts on PATH: these are
# expanded by the VM's shell, not here.
# shellcheck disable=SC2088
REMOTE_SRC='~/hamgan'
# shellcheck disable=SC2088
REMOTE_LOGS='~/hamgan-logs'
# shellcheck disable=SC2016
REMOTE_ENV='export PATH="$HOME/.local/bin:$PATH"'

if [[ $COMMAND == train && ! -f $REPO_ROOT/gin_configs/$EXPERIMENT.gin ]]; then
  if [[ $SOURCE == copy && $DRY_RUN != 1 ]]; then
    hg_die "experiment '$EXPERIMENT' has no gin_configs/$EXPERIMENT.gin in this checkout; pass --experiment=NAME of a file in gin_configs/ (ls gin_configs)."
  fi
  hg_info "warning: gin_configs/$EXPERIMENT.gin is not in this checkout; the VM must have it."
fi

# ssh NAME COMMAND: runs a shell command on every worker (host) of the VM, or on the
# hosts named by REMOTE_WORKERS (e.g. 0: the evaluation watcher runs once per slice).
REMOTE_WORKERS=all
remote() {
  local vm=$1 command=$2
  hg_run "${GCLOUD_TPU[@]}" ssh "$vm" "${WHERE[@]}" --worker="$REMOTE_WORKERS" --command="$command"
}

# Creates the VM, or reuses it (starting it if stopped, re-creating it if preempted).
ensure_vm() {
  local vm=$1 state=""
  local create=("${GCLOUD_TPU[@]}" create "$vm" "${WHERE[@]}"
    --accelerator-type="$ACCELERATOR" --version="$RUNTIME_VERSION")
  if [[ $SPOT == 1 ]]; then
    create+=(--spot)
  elif [[ $PREEMPTIBLE == 1 ]]; then
    create+=(--preemptible)
  fi
  if [[ $DRY_RUN == 1 ]]; then
    hg_run "${GCLOUD_TPU[@]}" describe "$vm" "${WHERE[@]}" --format='value(state)'
    hg_dry_note "if $vm does not exist (STOPPED: 'start' instead; PREEMPTED: 'delete', then this):"
    hg_run "${create[@]}"
    return
  fi
  if state=$("${GCLOUD_TPU[@]}" describe "$vm" "${WHERE[@]}" --format='value(state)' 2>/dev/null); then
    case $state in
      PREEMPTED | TERMINATED)
        # A reclaimed Spot/preemptible VM cannot be restarted: make it anew. The run
        # resumes from its last checkpoint in the bucket.
        hg_info "TPU VM $vm is $state; deleting and creating it again."
        hg_run "${GCLOUD_TPU[@]}" delete "$vm" "${WHERE[@]}" --quiet
        hg_run "${create[@]}"
        ;;
      STOPPED)
        hg_info "Starting the stopped TPU VM $vm."
        hg_run "${GCLOUD_TPU[@]}" start "$vm" "${WHERE[@]}"
        ;;
      *) hg_info "Reusing TPU VM $vm (state $state)." ;;
    esac
  else
    hg_run "${create[@]}"
  fi
}

# Puts this checkout (or a clone) on the VM and pip-installs it under constraints.txt.
install_hamgan() {
  local vm=$1 fetch
  if [[ $SKIP_INSTALL == 1 ]]; then
    hg_info "--skip_install: using the hamgan already installed on $vm."
    return
  fi
  if [[ $SOURCE == copy ]]; then
    local tarball=${TMPDIR:-/tmp}/hamgan-src.tar.gz
    if [[ $DRY_RUN != 1 ]] && [[ -n $(git -C "$REPO_ROOT" status --porcelain --untracked-files=no) ]]; then
      hg_info "warning: uncommitted changes in $REPO_ROOT are not copied (git archive HEAD)."
    fi
    hg_run git -C "$REPO_ROOT" archive --format=tar.gz --output="$tarball" HEAD
    hg_run "${GCLOUD_TPU[@]}" scp "$tarball" "$vm:hamgan-src.tar.gz" "${WHERE[@]}" --worker=all
    fetch="rm -rf $REMOTE_SRC && mkdir -p $REMOTE_SRC && tar -xzf ~/hamgan-src.tar.gz -C $REMOTE_SRC"
  else
    fetch="rm -rf $REMOTE_SRC && git clone --depth=1 --branch=$(hg_quote "$REF") $(hg_quote "$REPO") $REMOTE_SRC"
  fi
  # The VM's TPU build of TensorFlow satisfies the pin, so pip leaves it in place.
  remote "$vm" "set -e; $fetch; cd $REMOTE_SRC && python3 -m pip install --user -q -c constraints.txt -e . && python3 -c 'import tensorflow as tf, hamgan; print(\"TF\", tf.__version__, \"hamgan\", hamgan.__version__)'"
}

# start_session VM SESSION LOG WORDS...: runs WORDS detached in tmux, logging to LOG.
start_session() {
  local vm=$1 session=$2 log=$3
  shift 3
  local inner
  inner="$REMOTE_ENV; cd $REMOTE_SRC && $(hg_join "$@") 2>&1 | tee -a $log"
  remote "$vm" "$REMOTE_ENV; mkdir -p $REMOTE_LOGS; if tmux has-session -t $session 2>/dev/null; then echo '$session is already running on $vm; attach with tmux attach -t $session' >&2; exit 1; fi; tmux new-session -d -s $session $(hg_quote "$inner")"
}

follow_help() {
  local vm=$1 session=$2 log=$3
  hg_info ""
  hg_info "Started in tmux session '$session' on $vm. To follow it:"
  hg_info "  TensorBoard:  tensorboard --logdir=$MODEL_DIR   (run locally after 'gcloud auth application-default login')"
  hg_info "  log:          ${GCLOUD_TPU[*]} ssh $vm ${WHERE[*]} --command='tail -f $log'"
  hg_info "  attach:       ${GCLOUD_TPU[*]} ssh $vm ${WHERE[*]} -- -t tmux attach -t $session"
  hg_info "  train log:    gsutil cat $MODEL_DIR/train_log.jsonl | tail -n 3"
  hg_info "  results:      gsutil cat $MODEL_DIR/eval/results.jsonl"
  hg_info "  status:       launch/tpu_v3.sh status --project=$PROJECT --zone=$ZONE --tpu_name=$vm"
  hg_info "Delete the VM when done (it bills by the hour): launch/tpu_v3.sh delete --project=$PROJECT --zone=$ZONE --tpu_name=$vm"
}

case $COMMAND in
  create)
    ensure_vm "$TPU_NAME"
    install_hamgan "$TPU_NAME"
    ;;
  train)
    ensure_vm "$TPU_NAME"
    install_hamgan "$TPU_NAME"
    tpu=local
    if [[ $POD == 1 ]]; then
      tpu=$TPU_NAME
    fi
    train=(hamgan-train --gin_file="gin_configs/$EXPERIMENT.gin" --model_dir="$MODEL_DIR" --tpu="$tpu"
      --gin_param="$DATA_DIR_BINDING = '$DATA_DIR'")
    for binding in "${GIN_PARAMS[@]}"; do
      train+=(--gin_param="$binding")
    done
    log="$REMOTE_LOGS/$RUN_NAME.train.log"
    start_session "$TPU_NAME" "hamgan-train-$RUN_NAME" "$log" "${train[@]}"
    follow_help "$TPU_NAME" "hamgan-train-$RUN_NAME" "$log"
    ;;
  eval)
    if [[ $EVAL_TPU_NAME != "$TPU_NAME" ]]; then
      ensure_vm "$EVAL_TPU_NAME"
      install_hamgan "$EVAL_TPU_NAME"
    fi
    evaluate=(hamgan-eval --model_dir="$MODEL_DIR" --watch --data_dir="$DATA_DIR")
    if [[ $EVAL_TPU_NAME != "$TPU_NAME" ]]; then
      evaluate+=(--tpu=local)   # a VM of its own: evaluate on its TPU
    fi
    if [[ -n $EVAL_ARGS ]]; then
      read -r -a extra <<<"$EVAL_ARGS"
      evaluate+=("${extra[@]}")
    fi
    log="$REMOTE_LOGS/$RUN_NAME.eval.log"
    if [[ $EVAL_TPU_NAME == "$TPU_NAME" && $POD == 1 ]]; then
      REMOTE_WORKERS=0  # one watcher per run, on host 0 of the slice
    fi
    start_session "$EVAL_TPU_NAME" "hamgan-eval-$RUN_NAME" "$log" "${evaluate[@]}"
    follow_help "$EVAL_TPU_NAME" "hamgan-eval-$RUN_NAME" "$log"
    ;;
  status)
    hg_run "${GCLOUD_TPU[@]}" describe "$TPU_NAME" "${WHERE[@]}" --format='value(name,state,acceleratorType,runtimeVersion)'
    remote "$TPU_NAME" "tmux ls 2>/dev/null || echo 'no tmux sessions'; tail -n 5 $REMOTE_LOGS/*.log 2>/dev/null || true"
    ;;
  delete)
    hg_run "${GCLOUD_TPU[@]}" delete "$TPU_NAME" "${WHERE[@]}" --quiet
    ;;
esac
