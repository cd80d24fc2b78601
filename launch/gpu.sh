#!/usr/bin/env bash
# Runs a hamgan experiment on this machine's GPUs, with the evaluation watcher beside
# it. See launch/README.md.
set -euo pipefail

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LAUNCH_DIR/.." && pwd)
# shellcheck source=launch/common.sh disable=SC1091
source "$LAUNCH_DIR/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/gpu.sh [COMMAND] [flags]

Commands:
  start    (default) Start hamgan-train on the training GPUs and the evaluation
           watcher (hamgan-eval --watch) beside it, both in the background.
  train    Start only hamgan-train.
  eval     Start only the evaluation watcher.
  status   Show whether the two are running and the last lines of their logs.
  stop     Stop the processes this script started (by their saved process ids).

Commands run from the checkout's root; relative paths given as flags are taken
from the current folder. hamgan-train picks its strategy itself: MirroredStrategy over every visible GPU
when there are two or more, the one GPU otherwise. Training resumes from the last
checkpoint in model_dir, so 'start' after a stop (or a crash) continues the run.

Flags (each can also be set by the environment variable in brackets):
  --experiment=NAME     Gin experiment: gin_configs/NAME.gin. Required.
                        [HAMGAN_EXPERIMENT]
  --gin_file=PATH       Use this gin file instead of gin_configs/NAME.gin (NAME then
                        only names the run). [HAMGAN_GIN_FILE]
  --model_dir=DIR       Run directory (local or gs://). Default: runs/NAME in this
                        checkout. [HAMGAN_MODEL_DIR]
  --data_dir=DIR        tfds data_dir; empty uses tfds's default
                        (~/tensorflow_datasets). [HAMGAN_DATA_DIR]
  --data_dir_binding=B  Gin binding that gives hamgan-train the data_dir.
                        Default: train.data_dir. [HAMGAN_DATA_DIR_BINDING]
  --gin_param=BINDING   Extra gin binding for hamgan-train, e.g.
                        "train.num_steps = 1000"; repeatable. [HAMGAN_GIN_PARAMS,
                        bindings separated by ';']
  --eval_args=ARGS      Extra flags for hamgan-eval, split on spaces, e.g.
                        "--num_samples=10000". [HAMGAN_EVAL_ARGS]
  --gpus=LIST           GPUs for training, e.g. 0,1,2 (sets CUDA_VISIBLE_DEVICES).
                        Default: all. [HAMGAN_GPUS]
  --eval_gpu=ID         GPU for the watcher, e.g. 3, or 'cpu'. Default: the same
                        GPUs as training (both then grow GPU memory on demand).
                        [HAMGAN_EVAL_GPU]
  --log_dir=DIR         Logs and process ids. Default: MODEL_DIR/launch_logs for a
                        local model_dir, launch_logs/NAME for a gs:// one.
                        [HAMGAN_LOG_DIR]
  --bin_dir=DIR         Where hamgan-train and hamgan-eval are. Default: .venv/bin
                        of this checkout if it exists, else the PATH. [HAMGAN_BIN_DIR]
  --dry_run             Print every command instead of running it.
                        [HAMGAN_DRY_RUN=1]
  -h, --help            Show this help.

Example:
  launch/gpu.sh start --experiment=imagenet128_hamgan_baby \
      --data_dir=/data/tensorflow_datasets --gpus=0,1,2 --eval_gpu=3
EOF
}

EXPERIMENT=${HAMGAN_EXPERIMENT:-}
GIN_FILE=${HAMGAN_GIN_FILE:-}
MODEL_DIR=${HAMGAN_MODEL_DIR:-}
DATA_DIR=${HAMGAN_DATA_DIR:-}
DATA_DIR_BINDING=${HAMGAN_DATA_DIR_BINDING:-train.data_dir}
EVAL_ARGS=${HAMGAN_EVAL_ARGS:-}
GPUS=${HAMGAN_GPUS:-}
EVAL_GPU=${HAMGAN_EVAL_GPU:-}
LOG_DIR=${HAMGAN_LOG_DIR:-}
DRY_RUN=${HAMGAN_DRY_RUN:-0}
if [[ -n ${HAMGAN_BIN_DIR+set} ]]; then
  BIN_DIR=$HAMGAN_BIN_DIR
elif [[ -x $REPO_ROOT/.venv/bin/hamgan-train ]]; then
  BIN_DIR=$REPO_ROOT/.venv/bin
else
  BIN_DIR=""
fi
hg_set_flag() {
  case $1 in
    --experiment) EXPERIMENT=$2 ;;
    --gin_file) GIN_FILE=$2 ;;
    --model_dir) MODEL_DIR=$2 ;;
    --data_dir) DATA_DIR=$2 ;;
    --data_dir_binding) DATA_DIR_BINDING=$2 ;;
    --gin_param) GIN_PARAMS+=("$2") ;;
    --eval_args) EVAL_ARGS=$2 ;;
    --gpus) GPUS=$2 ;;
    --eval_gpu) EVAL_GPU=$2 ;;
    --log_dir) LOG_DIR=$2 ;;
    --bin_dir) BIN_DIR=$2 ;;
    *) hg_die "unknown flag '$1'; see --help for the flags." ;;
  esac
}

hg_parse_args "$@"

COMMAND=${COMMAND:-start}
case $COMMAND in
  start | train | eval | status | stop) ;;
  *) hg_die "unknown command '$COMMAND'; expected one of start, train, eval, status, stop." ;;
esac

hg_require "$EXPERIMENT" experiment --experiment HAMGAN_EXPERIMENT

# A local relative path from the caller's folder, made absolute (commands run from
# the checkout's root).
from_caller() {
  if [[ -n $1 && $1 != /* && $1 != *://* ]]; then
    printf '%s' "$PWD/$1"
  else
    printf '%s' "$1"
  fi
}
MODEL_DIR=$(from_caller "$MODEL_DIR")
DATA_DIR=$(from_caller "$DATA_DIR")
LOG_DIR=$(from_caller "$LOG_DIR")
BIN_DIR=$(from_caller "$BIN_DIR")
GIN_FILE=$(from_caller "$GIN_FILE")
MODEL_DIR=${MODEL_DIR:-runs/$EXPERIMENT}
GIN_FILE=${GIN_FILE:-gin_configs/$EXPERIMENT.gin}
if [[ -z $LOG_DIR ]]; then
  if [[ $MODEL_DIR == *://* ]]; then
    LOG_DIR=launch_logs/$(basename "$MODEL_DIR")
  else
    LOG_DIR=$MODEL_DIR/launch_logs
  fi
fi
cd "$REPO_ROOT"
hg_dry_note "the commands run in the checkout's root:"
if [[ $DRY_RUN == 1 ]]; then
  hg_join cd "$REPO_ROOT"
  echo
fi
if [[ ! -f $GIN_FILE ]]; then
  if [[ $DRY_RUN == 1 || $COMMAND == status || $COMMAND == stop ]]; then
    hg_info "warning: $GIN_FILE is not in this checkout."
  elif [[ $COMMAND != eval ]]; then
    hg_die "experiment '$EXPERIMENT' has no $GIN_FILE; pass --experiment=NAME of a file in gin_configs/ (ls gin_configs), or --gin_file=PATH."
  fi
fi
case $EVAL_GPU in
  "" | cpu | [0-9]*) ;;
  *) hg_die "--eval_gpu=$EVAL_GPU is not a GPU id or 'cpu'; pass e.g. --eval_gpu=3 or --eval_gpu=cpu." ;;
esac

tool() {
  printf '%s' "${BIN_DIR:+$BIN_DIR/}$1"
}

# start_bg NAME ENV_ASSIGNMENTS... -- WORDS...: runs WORDS under nohup in the
# background with its output in LOG_DIR/NAME.log and its id in LOG_DIR/NAME.pid.
start_bg() {
  local name=$1 log pid_file
  shift
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  log=$LOG_DIR/$name.log
  pid_file=$LOG_DIR/$name.pid
  if [[ $DRY_RUN != 1 && -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    hg_die "$name is already running (process $(cat "$pid_file"), see $log); run 'launch/gpu.sh stop --experiment=$EXPERIMENT' first."
  fi
  local words=(env "${envs[@]}" nohup "$@")
  if [[ $DRY_RUN == 1 ]]; then
    echo "$(hg_join "${words[@]}") >>$(hg_quote "$log") 2>&1 </dev/null & echo \$! >$(hg_quote "$pid_file")"
  else
    echo "+ $(hg_join "${words[@]}") >>$(hg_quote "$log") 2>&1 &" >&2
    "${words[@]}" >>"$log" 2>&1 </dev/null &
    echo $! >"$pid_file"
    hg_info "$name: process $!, log $log"
  fi
}

start_train() {
  local train=("$(tool hamgan-train)" --gin_file="$GIN_FILE" --model_dir="$MODEL_DIR")
  if [[ -n $DATA_DIR ]]; then
    train+=(--gin_param="$DATA_DIR_BINDING = '$DATA_DIR'")
  fi
  for binding in "${GIN_PARAMS[@]}"; do
    train+=(--gin_param="$binding")
  done
  local envs=(TF_FORCE_GPU_ALLOW_GROWTH=true)
  if [[ -n $GPUS ]]; then
    envs+=(CUDA_VISIBLE_DEVICES="$GPUS")
  fi
  start_bg train "${envs[@]}" -- "${train[@]}"
}

start_eval() {
  local evaluate=("$(tool hamgan-eval)" --model_dir="$MODEL_DIR" --watch)
  if [[ -n $DATA_DIR ]]; then
    evaluate+=(--data_dir="$DATA_DIR")
  fi
  if [[ -n $EVAL_ARGS ]]; then
    local extra
    read -r -a extra <<<"$EVAL_ARGS"
    evaluate+=("${extra[@]}")
  fi
  local envs=(TF_FORCE_GPU_ALLOW_GROWTH=true)
  case $EVAL_GPU in
    cpu) envs+=(CUDA_VISIBLE_DEVICES=) ;;
    "") [[ -z $GPUS ]] || envs+=(CUDA_VISIBLE_DEVICES="$GPUS") ;;
    *) envs+=(CUDA_VISIBLE_DEVICES="$EVAL_GPU") ;;
  esac
  start_bg eval "${envs[@]}" -- "${evaluate[@]}"
}

follow_help() {
  hg_info ""
  hg_info "To follow the run:"
  hg_info "  TensorBoard:  $(tool tensorboard) --logdir=$MODEL_DIR"
  hg_info "  logs:         tail -f $LOG_DIR/train.log $LOG_DIR/eval.log"
  hg_info "  speed:        tail -n 3 $MODEL_DIR/train_log.jsonl"
  hg_info "  results:      cat $MODEL_DIR/eval/results.jsonl"
  hg_info "  compare:      $(tool hamgan-compare) $MODEL_DIR runs/OTHER_RUN --out=runs/compare"
  hg_info "  stop:         launch/gpu.sh stop --experiment=$EXPERIMENT --model_dir=$MODEL_DIR"
}

stop_one() {
  local pid_file=$LOG_DIR/$1.pid pid
  if [[ $DRY_RUN == 1 ]]; then
    echo "kill \"\$(cat $(hg_quote "$pid_file"))\""
    return
  fi
  if [[ ! -f $pid_file ]]; then
    hg_info "$1: no $pid_file; nothing to stop."
    return
  fi
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    hg_run kill "$pid"
  else
    hg_info "$1: process $pid is not running."
  fi
  rm -f "$pid_file"
}

status_one() {
  local pid_file=$LOG_DIR/$1.pid
  if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "$1: running (process $(cat "$pid_file"))"
  else
    echo "$1: not running"
  fi
  if [[ -f $LOG_DIR/$1.log ]]; then
    tail -n 5 "$LOG_DIR/$1.log"
  fi
}

case $COMMAND in
  start | train | eval)
    hg_run mkdir -p "$LOG_DIR"
    # (if-statements, not `||`: set -e must stay active inside the functions)
    if [[ $COMMAND != eval ]]; then
      start_train
    fi
    if [[ $COMMAND != train ]]; then
      start_eval
    fi
    follow_help
    ;;
  status)
    status_one train
    status_one eval
    ;;
  stop)
    stop_one train
    stop_one eval
    ;;
esac
