#!/bin/sh
# Screenshots of each view of the desktop app under Xvfb (see docs/gui.md). Needs
#   apt-get install -y --no-install-recommends xvfb xauth imagemagick xdotool
# Usage: scripts/gui-screenshots.sh [path/to/pagesight] [out-dir] [folder-of-PDFs]
# Builds nothing; run it from the repository root (libpdfium: ./vendor/pdfium or $PDFIUM_LIB).
# Clicks by position (1280×800 window, default font size, no window manager).
#
# Every session starts with the developer's `random:tiny` model (`gui --model`): the default,
# the real ColQwen2.5, would first ask for its download. The live shots ingest up to 8 PDFs of
# the folder (readable ones: the script waits until all are indexed; default assets/samples, the
# committed shots used 8 TeX Live package manuals) plus a truncated copy of one of them with it
# (on the CPU of a build without CUDA), answer the CPU run's first-batch estimate with Continue,
# then search the new index and open the first result. The Corpus form's Advanced section stays
# closed (its default): Start ingest sits under the form's summary line.
set -eu
if [ -z "${PAGESIGHT_SHOTS_DISPLAY:-}" ]; then
  # Everything below runs inside one virtual screen.
  PAGESIGHT_SHOTS_DISPLAY=1 exec xvfb-run -a -s "-screen 0 1280x800x24" "$0" "$@"
fi
BIN=${1:-target/debug/pagesight}
OUT=${2:-docs/screenshots}
PDFS=${3:-assets/samples}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STATE=$(mktemp -d)
trap 'rm -rf "$STATE"' EXIT

# Each app session gets its own settings and data dirs (eframe remembers the theme and folder).
app() {
  home=$STATE/$1
  shift
  mkdir -p "$home"
  XDG_DATA_HOME=$home XDG_CONFIG_HOME=$home "$BIN" "$@" &
  APP=$!
}
shot() { import -window root "$OUT/$1.png"; }
click() { xdotool mousemove "$1" "$2" click 1; }

# The idle views, and the GPU figures recorded on the H100 opened on this machine.
app idle gui --model random:tiny
sleep 6
shot ingest
click 248 12; sleep 1; shot search
click 328 12; sleep 1.5; shot performance-live
click 160 103; sleep 1.5; shot performance-compare
click 1228 12; sleep 1.5; shot performance-compare-light
kill $APP
app recorded gui --model random:tiny --runs bench/results/2026-11-26-H100-ingest-nf4-final.json
sleep 8; shot performance-h100-recorded
xdotool mousemove 900 400
for _ in $(seq 15); do xdotool click 5; done # scroll down to the plots
sleep 1.5; shot performance-h100-plots
kill $APP

# A real ingest: the PDFs plus a damaged file sorted first, so the list shows its failure while
# the others are still on their way.
CORPUS=$STATE/thesis-pdfs
mkdir -p "$CORPUS"
for f in $(ls "$PDFS"/*.pdf | head -n 8); do cp "$f" "$CORPUS/"; done
GOOD=$(ls "$CORPUS" | wc -l)
FIRST=$(ls "$CORPUS"/*.pdf | head -n 1)
head -c $(($(wc -c <"$FIRST") / 10)) "$FIRST" >"$CORPUS/000-draft-truncated.pdf"

# Files completely in the session's index so far (0 while it does not exist yet).
indexed_files() {
  for i in "$STATE"/live/pagesight/indexes/*; do
    n=$("$BIN" index stats --index "$i" --json 2>/dev/null |
      sed -n 's/^ *"files_complete": \([0-9]*\).*/\1/p')
    echo "${n:-0}"
    return
  done
}
# Waits, at most $2 seconds, until $1 files are in the index.
wait_for_files() {
  t=0
  while [ "$(indexed_files)" -lt "$1" ] && [ $t -lt "$2" ]; do
    sleep 1
    t=$((t + 1))
  done
}

app live gui --folder "$CORPUS" --model random:tiny
sleep 6
# Without a window manager nobody gives the window the keyboard focus.
xdotool windowfocus --sync "$(xdotool search --name Pagesight | head -n 1)"
click 49 287 # Start ingest
# On the CPU the run pauses after its first batch with the estimate of the whole run (when the
# rest would take a minute or more): shoot it, then Continue. A run that did not pause has only
# labels where Continue would be.
sleep 25; shot ingest-estimate
click 49 353 # Continue
wait_for_files 3 300
sleep 1; shot ingest-running
wait_for_files "$GOOD" 900
if [ "$(indexed_files)" -lt "$GOOD" ]; then
  echo "warning: the ingest did not finish in 15 min; the search shots show a partial index" >&2
fi
sleep 3; shot ingest-done
click 248 12; sleep 1
click 290 44; sleep 0.5 # the query box
xdotool type --delay 40 "table of package options"
xdotool key Return
sleep 15; shot search-results
click 104 200; sleep 10; shot search-heatmap # the first result
kill $APP
echo "screenshots in $OUT"
