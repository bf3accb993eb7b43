#!/usr/bin/env bash
# The test command (README): sets up what the tests need, then runs every test on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export PDFIUM_LIB="$PWD/vendor/pdfium/libpdfium.so"
# Every crate of the workspace; the integration tests drive the developer's harnesses and the
# fault hooks, which only builds with these features carry.
cargo test --workspace --locked --features dev-tools,test-hooks "$@"
# The whole run (no test named) also compiles the model crate for AArch64, where alone its NEON
# kernels are built.
if [ $# -eq 0 ]; then ./scripts/check-aarch64.sh; fi
