#!/usr/bin/env bash
# Runs a hamgan experiment on a Cloud TPU VM or pod slice. See launch/README.md.
set -euo pipefail

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LAUNCH_DIR/.." && pwd)
# shellcheck source=launch/common.sh disable=SC1091
source "$LAUNCH_DIR/common.sh"
# shellcheck source=launch/tpu_types.sh disable=SC1091
source "$LAUNCH_DIR/tpu_types.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu.sh COMMAND [flags]

Commands:
  create   Create the TPU VM (or reuse it: start it if stopped, re-create it if
           preempted) and install hamgan on every host of it.
  train    create, then start hamgan-train on worker 0 (the one TensorFlow client,
           also on a pod slice) in the background, and print how to follow it.
  eval     Start the evaluation watcher (hamgan-eval --watch) on the same model_dir:
           on worker 0 of the training VM, on its host CPU, or on --eval_tpu_name.
  stop     Send SIGTERM to the run's hamgan-train and hamgan-eval: training saves a
           checkpoint and exits; train again resumes from it.
  status   Show the VM's state, which runs are alive on worker 0, the last log lines.
  delete   Delete the VM (the bucket and its runs stay).

Flags (each can also be set by the environment variable in brackets):
  --project=ID          Google Cloud project. Required. [HAMGAN_PROJECT]
  --zone=ZONE           Zone that has the TPU type, e.g. europe-west4-a (v3),
                        us-central2-b (v4). Required. [HAMGAN_ZONE]
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
  --tpu_name=NAME       TPU VM name. Default: hamgan-tpu (hamgan-v3 through
                        launch/tpu_v3.sh). [HAMGAN_TPU_NAME]
  --accelerator=TYPE    TPU type: v3-8 (the default), v3-32, ..., v4-8, v4-32, ...,
                        v5litepod-8 (v5e), v5p-8, v6e-8, ... (a wrong one is refused
                        with the list). More than 8 in the name is a pod slice of
                        several hosts. [HAMGAN_ACCELERATOR]
  --runtime_version=V   TPU software version. Default: tpu-vm-tf-2.15.1-pjrt on one
                        host and tpu-vm-tf-2.15.1-pod-pjrt on a slice (the TensorFlow
                        of the tpu stack, constraints.txt); v2-alpha-tpuv6e on v6e,
                        with the tensorflow-tpu wheel of constraints-tpu-wheel.txt.
                        [HAMGAN_RUNTIME_VERSION]
  --eval_tpu_name=NAME  VM that runs the evaluation watcher. Default: the training
                        VM (the watcher then uses worker 0's host CPU, as the TPU is
                        held by training). Another VM is created if needed and the
                        watcher uses its TPU (--tpu=local). [HAMGAN_EVAL_TPU_NAME]
  --eval_accelerator=T  TPU type of --eval_tpu_name, one host. Default: the training
                        type, or its family's 8 for a slice (v4-32: v4-8).
                        [HAMGAN_EVAL_ACCELERATOR]
  --spot                Create a Spot VM (cheaper, can be reclaimed; train again
                        to re-create it and resume). [HAMGAN_SPOT=1]
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
  launch/tpu.sh train --project=my-proj --zone=europe-west4-a \
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
TPU_NAME=${HAMGAN_TPU_NAME:-hamgan-tpu}
EVAL_TPU_NAME=${HAMGAN_EVAL_TPU_NAME:-}
ACCELERATOR=${HAMGAN_ACCELERATOR:-v3-8}
EVAL_ACCELERATOR=${HAMGAN_EVAL_ACCELERATOR:-}
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
    --eval_accelerator) EVAL_ACCELERATOR=$2 ;;
    --runtime_version) RUNTIME_VERSION=$2 ;;
    --source) SOURCE=$2 ;;
    --repo) REPO=$2 ;;
    --ref) REF=$2 ;;
    *) hg_die "unknown flag '$1'; see --help for the flags." ;;
  esac
}

hg_parse_args "$@"

COMMANDS="create, train, eval, stop, status, delete"
case $COMMAND in
  create | train | eval | stop | status | delete) ;;
  "") usage >&2; hg_die "no command given; expected one of $COMMANDS." ;;
  *) hg_die "unknown command '$COMMAND'; expected one of $COMMANDS." ;;
esac

hg_require "$PROJECT" project --project HAMGAN_PROJECT
hg_require "$ZONE" zone --zone HAMGAN_ZONE
if [[ $COMMAND == train || $COMMAND == eval ]]; then
  hg_require "$BUCKET" bucket --bucket HAMGAN_BUCKET
fi
if [[ $COMMAND == train || $COMMAND == eval || $COMMAND == stop ]] && [[ -z $RUN_NAME ]]; then
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

# The tpu stack's TensorFlow, the one pin: the tpu-vm-tf runtime must carry it.
STACK_TF=$(hg_pinned_version "$REPO_ROOT/constraints.txt" tensorflow)
[[ -n $STACK_TF ]] || hg_die "constraints.txt in $REPO_ROOT pins no tensorflow==VERSION; this checkout is incomplete."
hg_tpu_type "$ACCELERATOR"
POD=$TPU_POD
FAMILY=$TPU_FAMILY
RUNTIME_VERSION=${RUNTIME_VERSION:-$(hg_tpu_default_runtime "$FAMILY" "$POD" "$STACK_TF")}
hg_tpu_check_runtime "$ACCELERATOR" "$POD" "$RUNTIME_VERSION" "$STACK_TF"

EVAL_TPU_NAME=${EVAL_TPU_NAME:-$TPU_NAME}
if [[ $EVAL_TPU_NAME != "$TPU_NAME" ]]; then
  if [[ -z $EVAL_ACCELERATOR ]]; then
    EVAL_ACCELERATOR=$ACCELERATOR
    if [[ $POD == 1 ]]; then
      EVAL_ACCELERATOR=$FAMILY-8
    fi
  fi
  hg_tpu_type "$EVAL_ACCELERATOR"
  if [[ $TPU_POD == 1 ]]; then
    hg_die "--eval_accelerator=$EVAL_ACCELERATOR is a slice of several hosts; the evaluation VM runs one watcher on one host: pass e.g. --eval_accelerator=$TPU_FAMILY-8."
  fi
  EVAL_RUNTIME=$RUNTIME_VERSION
  if [[ $EVAL_ACCELERATOR != "$ACCELERATOR" ]]; then
    EVAL_RUNTIME=$(hg_tpu_default_runtime "$TPU_FAMILY" 0 "$STACK_TF")
  fi
  hg_tpu_check_runtime "$EVAL_ACCELERATOR" 0 "$EVAL_RUNTIME" "$STACK_TF"
fi

BUCKET=$(hg_bucket_name "$BUCKET")
RUN_NAME=${RUN_NAME:-$EXPERIMENT}
if [[ -n $RUN_NAME && ! $RUN_NAME =~ ^[A-Za-z0-9._-]+$ ]]; then
  hg_die "run name '$RUN_NAME' is not valid: it names a folder and files, so use letters, digits, '.', '_' and '-' (pass --run_name=NAME)."
fi
DATA_DIR=${DATA_DIR:-gs://$BUCKET/tfds}
MODEL_DIR=gs://$BUCKET/runs/$RUN_NAME
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

# remote VM WORKERS COMMAND: runs a shell command on the hosts WORKERS of the VM: all
# of them (installing) or 0 (the client, the watcher, their status and stop).
remote() {
  hg_run "${GCLOUD_TPU[@]}" ssh "$1" "${WHERE[@]}" --worker="$2" --command="$3"
}

# ensure_vm VM TYPE RUNTIME: creates the VM, or reuses it (starting it if stopped,
# re-creating it if preempted).
ensure_vm() {
  local vm=$1 state=""
  local create=("${GCLOUD_TPU[@]}" create "$vm" "${WHERE[@]}"
    --accelerator-type="$2" --version="$3")
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

# install_hamgan VM ROUTE: puts this checkout (or a clone) on every host of the VM and
# runs launch/tpu_vm_install.sh there, which leaves the VM's TensorFlow as it is.
install_hamgan() {
  local vm=$1 route=$2 fetch install
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
  if [[ $route == wheel ]]; then
    install="bash launch/tpu_vm_install.sh --tensorflow=wheel --constraints=constraints-tpu-wheel.txt --extras=current"
  else
    install="bash launch/tpu_vm_install.sh --tensorflow=runtime --constraints=constraints.txt --extras=tpu"
  fi
  remote "$vm" all "set -e; $fetch; cd $REMOTE_SRC && $install"
}

# start VM NAME ENV WORDS...: runs WORDS (with the environment ENV, a shell string) on
# worker 0 of VM in the background, immune to hangups and with no pipe after it, so a
# SIGTERM (stop, or the host shutting down) reaches the process itself; its process id
# goes to LOGS/RUN.NAME.pid and its output to LOGS/RUN.NAME.log.
start() {
  local vm=$1 name=$2 env=$3
  shift 3
  local log="$REMOTE_LOGS/$RUN_NAME.$name.log" pid="$REMOTE_LOGS/$RUN_NAME.$name.pid"
  remote "$vm" 0 "$REMOTE_ENV; mkdir -p $REMOTE_LOGS && cd $REMOTE_SRC && if [ -f $pid ] && kill -0 \$(cat $pid) 2>/dev/null; then echo \"hamgan-$name of run $RUN_NAME already runs on $vm (process \$(cat $pid)); stop it with launch/tpu.sh stop\" >&2; exit 1; fi; env ${env:+$env }nohup $(hg_join "$@") >>$log 2>&1 </dev/null & echo \$! >$pid"
  hg_info ""
  hg_info "Started hamgan-$name of run $RUN_NAME on worker 0 of $vm. To follow it:"
  hg_info "  log:          ${GCLOUD_TPU[*]} ssh $vm ${WHERE[*]} --worker=0 --command='tail -f $log'"
  hg_info "  TensorBoard:  tensorboard --logdir=$MODEL_DIR   (run locally after 'gcloud auth application-default login')"
  hg_info "  train log:    gsutil cat $MODEL_DIR/train_log.jsonl | tail -n 3"
  hg_info "  results:      gsutil cat $MODEL_DIR/eval/results.jsonl"
  hg_info "  status:       launch/tpu.sh status --project=$PROJECT --zone=$ZONE --tpu_name=$vm"
  hg_info "  stop:         launch/tpu.sh stop --project=$PROJECT --zone=$ZONE --tpu_name=$vm --run_name=$RUN_NAME"
  hg_info "Delete the VM when done (it bills by the hour): launch/tpu.sh delete --project=$PROJECT --zone=$ZONE --tpu_name=$vm"
}

# stop_runs VM NAMES...: SIGTERM to the run's processes NAMES on worker 0 of VM.
stop_runs() {
  local vm=$1 name pid command=""
  shift
  for name in "$@"; do
    pid="$REMOTE_LOGS/$RUN_NAME.$name.pid"
    command+="if [ -f $pid ] && kill -TERM \$(cat $pid) 2>/dev/null; then echo 'SIGTERM sent to hamgan-$name of run $RUN_NAME on $vm'; else echo 'hamgan-$name of run $RUN_NAME is not running on $vm'; fi; "
  done
  remote "$vm" 0 "${command% }"
}

case $COMMAND in
  create)
    hg_tpu_client "$TPU_NAME" "$POD" "$RUNTIME_VERSION"
    ensure_vm "$TPU_NAME" "$ACCELERATOR" "$RUNTIME_VERSION"
    install_hamgan "$TPU_NAME" "$TPU_ROUTE"
    ;;
  train)
    hg_tpu_client "$TPU_NAME" "$POD" "$RUNTIME_VERSION"
    ensure_vm "$TPU_NAME" "$ACCELERATOR" "$RUNTIME_VERSION"
    install_hamgan "$TPU_NAME" "$TPU_ROUTE"
    train=(hamgan-train --gin_file="gin_configs/$EXPERIMENT.gin" --model_dir="$MODEL_DIR"
      --tpu="$TPU_FLAG" --gin_param="$DATA_DIR_BINDING = '$DATA_DIR'")
    for binding in "${GIN_PARAMS[@]}"; do
      train+=(--gin_param="$binding")
    done
    start "$TPU_NAME" train "$TPU_ENV" "${train[@]}"
    ;;
  eval)
    evaluate=(hamgan-eval --model_dir="$MODEL_DIR" --watch --data_dir="$DATA_DIR")
    if [[ $EVAL_TPU_NAME == "$TPU_NAME" ]]; then
      # Beside the training client on worker 0, on the host CPU: loading the TPU
      # library there would contend with training for the TPU.
      env="TPU_LOAD_LIBRARY=0"
    else
      hg_tpu_client "$EVAL_TPU_NAME" 0 "$EVAL_RUNTIME"
      ensure_vm "$EVAL_TPU_NAME" "$EVAL_ACCELERATOR" "$EVAL_RUNTIME"
      install_hamgan "$EVAL_TPU_NAME" "$TPU_ROUTE"
      env=$TPU_ENV
      evaluate+=(--tpu="$TPU_FLAG")   # a VM of its own: evaluate on its TPU
    fi
    if [[ -n $EVAL_ARGS ]]; then
      read -r -a extra <<<"$EVAL_ARGS"
      evaluate+=("${extra[@]}")
    fi
    start "$EVAL_TPU_NAME" eval "$env" "${evaluate[@]}"
    ;;
  stop)
    if [[ $EVAL_TPU_NAME == "$TPU_NAME" ]]; then
      stop_runs "$TPU_NAME" train eval
    else
      stop_runs "$TPU_NAME" train
      stop_runs "$EVAL_TPU_NAME" eval
    fi
    ;;
  status)
    hg_run "${GCLOUD_TPU[@]}" describe "$TPU_NAME" "${WHERE[@]}" --format='value(name,state,acceleratorType,runtimeVersion)'
    remote "$TPU_NAME" 0 "for p in $REMOTE_LOGS/*.pid; do [ -f \"\$p\" ] || continue; n=\$(basename \"\$p\" .pid); if kill -0 \$(cat \"\$p\") 2>/dev/null; then echo \"\$n: running (process \$(cat \"\$p\"))\"; else echo \"\$n: not running\"; fi; done; tail -n 5 $REMOTE_LOGS/*.log 2>/dev/null || true"
    ;;
  delete)
    hg_run "${GCLOUD_TPU[@]}" delete "$TPU_NAME" "${WHERE[@]}" --quiet
    ;;
esac
