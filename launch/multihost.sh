#!/usr/bin/env bash
# Runs one hamgan-train worker per host (MultiWorkerMirroredStrategy), over ssh, each
# with its own TF_CONFIG. See launch/README.md.
set -euo pipefail

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/common.sh disable=SC1091
source "$LAUNCH_DIR/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/multihost.sh [COMMAND] [flags]

Commands:
  start      (default) Start hamgan-train on every host, in the background; host i
             of the list is worker i (worker 0 is the chief, the only one that
             writes to model_dir). Every host gets the same command and its own
             TF_CONFIG.
  stop       Send SIGTERM to every worker: all of them agree on a step, save one
             checkpoint and exit 0; 'start' again resumes from it.
  status     Show whether each worker runs, and the last lines of its log.
  tf_config  Print each host's TF_CONFIG (nothing is run).

Every host must have hamgan installed (the same version) and reach model_dir
(a gs:// bucket, or a file system shared by all hosts) and the data. The hosts
must reach each other on --port. A worker that dies makes the others exit with
an error within train.worker_timeout_secs; then 'stop' and 'start' again.

Flags (each can also be set by the environment variable in brackets):
  --hosts=H1,H2,...     Hosts in worker order (user@host or host). [HAMGAN_HOSTS]
  --hosts_file=FILE     Or: a file with one host per line ('#' comments allowed).
                        [HAMGAN_HOSTS_FILE]
  --port=PORT           Port each worker listens on for the others. Default:
                        23456. [HAMGAN_PORT]
  --experiment=NAME     Gin experiment: gin_configs/NAME.gin on the hosts.
                        Required for start. [HAMGAN_EXPERIMENT]
  --model_dir=DIR       Shared run directory (gs:// or a shared mount). Required for
                        start. [HAMGAN_MODEL_DIR]
  --gin_param=BINDING   Extra gin binding, e.g. "train.num_steps = 1000";
                        repeatable. [HAMGAN_GIN_PARAMS, separated by ';']
  --remote_dir=DIR      The hamgan checkout on every host. Default: ~/hamgan.
                        [HAMGAN_REMOTE_DIR]
  --remote_bin=CMD      hamgan-train on the hosts. Default: hamgan-train.
                        [HAMGAN_REMOTE_BIN]
  --run_name=NAME       Names the logs and process-id files. Default: the
                        experiment. [HAMGAN_RUN_NAME]
  --ssh=CMD             The ssh command. Default: ssh. [HAMGAN_SSH]
  --dry_run             Print every command instead of running it.
                        [HAMGAN_DRY_RUN=1]
  -h, --help            Show this help.

Example:
  launch/multihost.sh start --hosts=gpu-a,gpu-b --experiment=imagenet128_sagan \
      --model_dir=gs://my-bucket/runs/sagan --gin_param="train.data_dir = 'gs://my-bucket/tfds'"
EOF
}

HOSTS=${HAMGAN_HOSTS:-}
HOSTS_FILE=${HAMGAN_HOSTS_FILE:-}
PORT=${HAMGAN_PORT:-23456}
EXPERIMENT=${HAMGAN_EXPERIMENT:-}
MODEL_DIR=${HAMGAN_MODEL_DIR:-}
# shellcheck disable=SC2088
DEFAULT_REMOTE_DIR='~/hamgan'
REMOTE_DIR=${HAMGAN_REMOTE_DIR:-$DEFAULT_REMOTE_DIR}
REMOTE_BIN=${HAMGAN_REMOTE_BIN:-hamgan-train}
RUN_NAME=${HAMGAN_RUN_NAME:-}
SSH=${HAMGAN_SSH:-ssh}
DRY_RUN=${HAMGAN_DRY_RUN:-0}
hg_set_flag() {
  case $1 in
    --hosts) HOSTS=$2 ;;
    --hosts_file) HOSTS_FILE=$2 ;;
    --port) PORT=$2 ;;
    --experiment) EXPERIMENT=$2 ;;
    --model_dir) MODEL_DIR=$2 ;;
    --gin_param) GIN_PARAMS+=("$2") ;;
    --remote_dir) REMOTE_DIR=$2 ;;
    --remote_bin) REMOTE_BIN=$2 ;;
    --run_name) RUN_NAME=$2 ;;
    --ssh) SSH=$2 ;;
    *) hg_die "unknown flag '$1'; see --help for the flags." ;;
  esac
}

hg_parse_args "$@"

COMMAND=${COMMAND:-start}
case $COMMAND in
  start | stop | status | tf_config) ;;
  *) hg_die "unknown command '$COMMAND'; expected one of start, stop, status, tf_config." ;;
esac

HOST_LIST=()
if [[ -n $HOSTS && -n $HOSTS_FILE ]]; then
  hg_die "--hosts and --hosts_file both given; pass only one of them."
elif [[ -n $HOSTS_FILE ]]; then
  [[ -r $HOSTS_FILE ]] || hg_die "--hosts_file=$HOSTS_FILE cannot be read; pass a file with one host per line."
  while read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [[ -z $line ]] || HOST_LIST+=("$line")
  done <"$HOSTS_FILE"
elif [[ -n $HOSTS ]]; then
  IFS=',' read -r -a HOST_LIST <<<"$HOSTS"
fi
((${#HOST_LIST[@]} >= 2)) || hg_die "need at least two hosts (got ${#HOST_LIST[@]}): pass --hosts=H1,H2 or --hosts_file=FILE; on one host use launch/gpu.sh."
if [[ ! $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
  hg_die "--port=$PORT is not a TCP port; pass e.g. --port=23456."
fi
if [[ $COMMAND == start || $COMMAND == tf_config ]]; then
  hg_require "$EXPERIMENT" experiment --experiment HAMGAN_EXPERIMENT
fi
if [[ $COMMAND == start ]]; then
  hg_require "$MODEL_DIR" model_dir --model_dir HAMGAN_MODEL_DIR
  if [[ $MODEL_DIR != *://* && $MODEL_DIR != /* ]]; then
    hg_die "--model_dir=$MODEL_DIR is relative: every host must reach the same directory; pass gs://... or an absolute path on a shared file system."
  fi
fi
RUN_NAME=${RUN_NAME:-${EXPERIMENT:-run}}

# The TF_CONFIG of worker $1: the same cluster everywhere, its own index.
tf_config_of() {
  local index=$1 addresses="" host
  for host in "${HOST_LIST[@]}"; do
    addresses+="${addresses:+,}\"${host#*@}:$PORT\""
  done
  printf '{"cluster": {"worker": [%s]}, "task": {"type": "worker", "index": %d}}' "$addresses" "$index"
}

# shellcheck disable=SC2088
LOGS='~/hamgan-logs'
log_of() { printf '%s/%s.worker-%d.log' "$LOGS" "$RUN_NAME" "$1"; }
pid_of() { printf '%s/%s.worker-%d.pid' "$LOGS" "$RUN_NAME" "$1"; }

for i in "${!HOST_LIST[@]}"; do
  host=${HOST_LIST[$i]}
  log=$(log_of "$i")
  pid=$(pid_of "$i")
  case $COMMAND in
    tf_config)
      echo "${host}: TF_CONFIG=$(tf_config_of "$i")"
      ;;
    start)
      train=("$REMOTE_BIN" --gin_file="gin_configs/$EXPERIMENT.gin" --model_dir="$MODEL_DIR")
      for binding in "${GIN_PARAMS[@]}"; do
        train+=(--gin_param="$binding")
      done
      remote="mkdir -p $LOGS && cd $REMOTE_DIR && if [ -f $pid ] && kill -0 \$(cat $pid) 2>/dev/null; then echo 'worker $i already runs on $host' >&2; exit 1; fi; TF_CONFIG=$(hg_quote "$(tf_config_of "$i")") nohup $(hg_join "${train[@]}") >>$log 2>&1 </dev/null & echo \$! >$pid"
      hg_run "$SSH" "$host" "$remote"
      ;;
    stop)
      hg_run "$SSH" "$host" "if [ -f $pid ]; then kill -TERM \$(cat $pid) 2>/dev/null && echo 'SIGTERM sent to worker $i on $host' || echo 'worker $i on $host is not running'; fi"
      ;;
    status)
      hg_run "$SSH" "$host" "if [ -f $pid ] && kill -0 \$(cat $pid) 2>/dev/null; then echo 'worker $i on $host: running'; else echo 'worker $i on $host: not running'; fi; tail -n 3 $log 2>/dev/null || true"
      ;;
  esac
done
if [[ $COMMAND == start ]]; then
  hg_info "Started ${#HOST_LIST[@]} workers; worker 0 (${HOST_LIST[0]}) is the chief and writes $MODEL_DIR."
  hg_info "Follow: launch/multihost.sh status --hosts=$(IFS=,; echo "${HOST_LIST[*]}") --run_name=$RUN_NAME"
fi
