# Sourced by build.sh and smoke.sh: their help (the comment block at the top of the sourcing
# script), their error exit, and their one optional OUT_DIR argument, parsed alike.
cli_script=${BASH_SOURCE[1]}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$cli_script"
}
die() { echo "$(basename "$cli_script"): error: $*" >&2; exit 1; }

# Refuse options other than -h/--help and more than one argument; the caller reads ${1:-}.
check_out_dir_args() {
  case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
  esac
  [ $# -le 1 ] || { usage >&2; die "at most one argument (OUT_DIR)"; }
}
