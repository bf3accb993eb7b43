#!/usr/bin/env bash
# Builds the `cuda` pagesight here (release, CUDA_COMPUTE_CAP=90) and packs what the GPU machine
# needs into the git-ignored folder .device/ (xz-compressed binary + libpdfium), well under the
# 64 MiB a device call may carry. Run from anywhere; .device/ lands in this checkout's root.
#
#   scripts/build-cuda.sh            # build + pack
#   scripts/build-cuda.sh --check    # cargo check --features cuda only (while developing)
#
# Needs the CUDA 13.0 toolkit from PyPI wheels (shared/gpu.md, shared/gpu/setup-cuda13.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export CUDA_HOME=${CUDA_HOME:-/opt/cuda13/site/nvidia/cu13}
export PATH="$CUDA_HOME/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
# A target dir of its own: the cuda build must not disturb the shared CPU debug build.
export CARGO_TARGET_DIR=${CUDA_TARGET_DIR:-/work/target-cuda}
if ! command -v nvcc >/dev/null; then
  echo "nvcc not found under CUDA_HOME=$CUDA_HOME: install the toolkit first (shared/gpu.md)" >&2
  exit 1
fi
if [ "${1:-}" = "--check" ]; then
  exec cargo check --workspace --features cuda,dev-tools,test-hooks --tests
fi
# dev-tools: the device proofs (`bench gpu-selftest`, `bench gemm`) are developer harnesses.
cargo build --release --features cuda,dev-tools --bin pagesight
bin="$CARGO_TARGET_DIR/release/pagesight"
pdfium=${PDFIUM_LIB:-$root/vendor/pdfium/libpdfium.so}
[ -f "$pdfium" ] || { echo "libpdfium not found at $pdfium: run scripts/setup.sh or set PDFIUM_LIB" >&2; exit 1; }
mkdir -p .device
strip -o .device/pagesight "$bin"
cp "$pdfium" .device/libpdfium.so
# xz, because python3's lzma can unpack it on any machine even without the xz tool.
xz -T2 -6 -f .device/pagesight .device/libpdfium.so
git rev-parse --short HEAD > .device/commit 2>/dev/null || echo unknown > .device/commit
total=$(du -cb .device/* | tail -1 | cut -f1)
echo "packed .device/: $(ls -sh .device | tr '\n' ' ')"
if [ "$total" -gt $((56 * 1024 * 1024)) ]; then
  echo "warning: .device/ holds $((total / 1048576)) MiB; with the tree it may exceed the 64 MiB per call" >&2
fi
echo "device call: carry [\".device\"], command: scripts/device-run.sh selftest"
