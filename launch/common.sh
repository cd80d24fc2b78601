# shellcheck shell=bash
# Helpers shared by the hamgan launchers (sourced, not run).
#
# Commands go through hg_run, so that --dry_run prints each one, shell-quoted and
# copy-pasteable, on stdout instead of running it. Messages for the user (what is
# happening, how to follow a run) go to stderr, so stdout of a dry run holds only
# commands and '#' comment lines.

# Set by the launchers; 1 prints commands instead of running them.
DRY_RUN=${DRY_RUN:-0}

# Prints an error naming what is wrong and exits.
hg_die() {
  echo "error: $*" >&2
  exit 2
}

hg_info() {
  echo "$*" >&2
}

# Quotes one word for a POSIX shell; plain words (and a leading ~) stay readable.
hg_quote() {
  local word=$1
  if [[ -n $word && $word =~ ^[A-Za-z0-9_@%+=:,./~-]+$ ]]; then
    printf '%s' "$word"
  elif [[ $word != *[\$\`\"\\!]* ]]; then
    printf '"%s"' "$word"
  else
    local escaped=${word//\'/\'\\\'\'}
    printf "'%s'" "$escaped"
  fi
}

# Joins words into one shell command line, each word quoted.
hg_join() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(hg_quote "$word")"
  done
  printf '%s' "$out"
}

# Runs a command, or prints it under --dry_run.
hg_run() {
  if [[ $DRY_RUN == 1 ]]; then
    hg_join "$@"
    echo
  else
    echo "+ $(hg_join "$@")" >&2
    "$@"
  fi
}

# Prints a comment line in a dry run (a decision the real run makes at run time).
hg_dry_note() {
  if [[ $DRY_RUN == 1 ]]; then
    echo "# $*"
  fi
}

# hg_require VALUE SETTING FLAG ENV_VAR: fails naming the setting if VALUE is empty.
hg_require() {
  if [[ -z $1 ]]; then
    hg_die "missing required setting '$2': pass $3=... or set $4 (see --help)."
  fi
}

# Strips gs:// and a trailing slash from a bucket name.
hg_bucket_name() {
  local b=${1#gs://}
  printf '%s' "${b%/}"
}

# hg_parse_args "$@": the launchers' one command-line parser. Handles --help (the
# script's usage), --dry_run, the boolean flags the script's hg_boolean_flag accepts
# (it sets them and returns 0), --name=value and --name value (handed to the script's
# hg_set_flag NAME VALUE, which dies on an unknown name), and one command word, left in
# COMMAND. GIN_PARAMS starts from HAMGAN_GIN_PARAMS (';'-separated).
# shellcheck disable=SC2034  # COMMAND and GIN_PARAMS are read by the sourcing script
hg_parse_args() {
  local arg name value
  COMMAND=""
  GIN_PARAMS=()
  if [[ -n ${HAMGAN_GIN_PARAMS:-} ]]; then
    IFS=';' read -r -a GIN_PARAMS <<<"$HAMGAN_GIN_PARAMS"
  fi
  while (($#)); do
    arg=$1
    shift
    case $arg in
      -h | --help) usage; exit 0 ;;
      --dry_run) DRY_RUN=1; continue ;;
      --*=*) name=${arg%%=*}; value=${arg#*=} ;;
      --*)
        if declare -F hg_boolean_flag >/dev/null && hg_boolean_flag "$arg"; then
          continue
        fi
        (($#)) || hg_die "flag $arg needs a value (e.g. $arg=VALUE); see --help."
        name=$arg; value=$1; shift ;;
      *)
        [[ -z $COMMAND ]] || hg_die "unexpected argument '$arg' (the command is already '$COMMAND'); see --help."
        COMMAND=$arg; continue ;;
    esac
    hg_set_flag "$name" "$value"
  done
}
