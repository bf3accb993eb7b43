#!/usr/bin/env bash
# Several `device-run.sh` invocations in one device call, each with its own environment, their
# summaries gathered in $OUT/all.txt (device-run.sh rewrites summary.txt each time):
#
#   scripts/device-batch.sh "selftest" "EMBED_ROWS=1,0 :: embed" "INGEST_DEVICES=cuda:0 :: ingest corpus/bench 400"
#
# Each argument is `[VAR=VALUE ...] :: STEPS` (or just STEPS); STEP_TIMEOUT=SECONDS among the
# variables (default BATCH_STEP_TIMEOUT, else 300) bounds that one, so a slow step cannot eat the
# others' time.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/pagesight-out}
mkdir -p "$OUT"
all="$OUT/all.txt"
: > "$all"
for spec in "$@"; do
  envs=(); steps=$spec
  if [[ "$spec" == *"::"* ]]; then
    read -r -a envs <<< "${spec%%::*}"
    steps=${spec#*::}
  fi
  echo "=== ${envs[*]:-} $steps" | tee -a "$all"
  limit=${BATCH_STEP_TIMEOUT:-300}
  for e in "${envs[@]}"; do [[ "$e" == STEP_TIMEOUT=* ]] && limit=${e#STEP_TIMEOUT=}; done
  start=$(date +%s)
  # shellcheck disable=SC2086 # the steps are words
  env "${envs[@]}" OUT="$OUT" timeout "$limit" "$root/scripts/device-run.sh" $steps > "$OUT/batch-step.log" 2>&1
  rc=$?
  echo "(exit $rc, $(( $(date +%s) - start )) s)" >> "$all"
  grep -vE "^LD_LIBRARY_PATH" "$OUT/summary.txt" >> "$all"
  # A step cut short (or failed) wrote no summary of its own: its output's last lines instead.
  [ "$rc" -eq 0 ] || tail -n 40 "$OUT/batch-step.log" >> "$all"
done
cat "$all"
