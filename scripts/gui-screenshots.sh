#!/bin/sh
# Screenshots of each view of the desktop app under Xvfb (see docs/gui.md). Needs
#   apt-get install -y --no-install-recommends xvfb xauth imagemagick xdotool
# Usage: scripts/gui-screenshots.sh [path/to/pagesight] [out-dir]
# Clicks the tabs by position (1280×800 window, default font size).
set -eu
BIN=${1:-target/debug/pagesight}
OUT=${2:-docs/screenshots}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STATE=$(mktemp -d)
export BIN OUT STATE
xvfb-run -a -s "-screen 0 1280x800x24" sh -c '
  XDG_DATA_HOME=$STATE XDG_CONFIG_HOME=$STATE "$BIN" & P=$!
  sleep 6
  import -window root "$OUT/ingest.png"
  xdotool mousemove 248 12 click 1; sleep 1; import -window root "$OUT/search.png"
  xdotool mousemove 328 12 click 1; sleep 1.5; import -window root "$OUT/performance-live.png"
  xdotool mousemove 160 98 click 1; sleep 1.5; import -window root "$OUT/performance-compare.png"
  xdotool mousemove 1228 12 click 1; sleep 1.5; import -window root "$OUT/performance-compare-light.png"
  kill $P
  # The GPU figures recorded on the H200, opened on this machine.
  XDG_DATA_HOME=$STATE XDG_CONFIG_HOME=$STATE "$BIN" gui --runs bench/results/2026-11-26-H200-ingest-nf4-bf16-final.json & P=$!
  sleep 8; import -window root "$OUT/performance-h200-recorded.png"
  kill $P'
rm -rf "$STATE"
echo "screenshots in $OUT"
