#!/usr/bin/env bash
# The run command (README): sets everything up, builds, runs the app's main job on the sample
# PDFs in assets/ (ingest + search, headless), then opens the app when there is a display.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export PDFIUM_LIB="$PWD/vendor/pdfium/libpdfium.so"
cargo build --locked --release
exec target/release/pagesight demo "$@"
