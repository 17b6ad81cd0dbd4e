# Sourced by build.sh and smoke.sh: one progress line per step (time since the start, the step's
# duration), and each step's time appended to $timings as a tab-separated line.
t_start=$SECONDS
step_name=""
step_t=0
: > "$timings"
step() {
  step_name=$1
  step_t=$SECONDS
  echo "==> [+$((SECONDS - t_start))s] $step_name"
}
step_done() {
  local took=$((SECONDS - step_t))
  echo "    done in ${took}s${1:+ ($1)}"
  printf '%s\t%s\t%s\n' "$step_name" "$took" "${1:-}" >> "$timings"
}
