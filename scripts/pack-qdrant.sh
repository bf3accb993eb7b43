#!/usr/bin/env bash
# Puts the Qdrant server build the tests use (../shared/qdrant: the compressed binary and its
# start script) into .device/qdrant/, for device-run.sh's `qdrant` step, which runs
# `bench qdrant` on the GPU host's CPUs. Carry .device as usual (about 22 MB more).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=${QDRANT_DIR:-$root/../shared/qdrant}
[ -f "$src/qdrant.xz" ] && [ -x "$src/start.sh" ] || { echo "no Qdrant build in $src" >&2; exit 2; }
mkdir -p "$root/.device/qdrant"
cp "$src/qdrant.xz" "$src/start.sh" "$root/.device/qdrant/"
chmod u+w "$root/.device/qdrant/"*
echo "packed $(du -sh "$root/.device/qdrant" | cut -f1) into .device/qdrant"
