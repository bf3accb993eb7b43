#!/usr/bin/env bash
# Compiles the app for AArch64 (Apple silicon, Graviton, Snapdragon laptops), and the model crate's
# tests: the NEON query kernels (`quant/gemm/neon.rs`) exist only there, and x86-only code that
# lacks its fallback fails only there, so a build on x86 alone would never see either. Installs the Rust target and a C cross compiler (a dependency builds C)
# when they are missing. Running those tests needs an AArch64 machine or qemu-user:
#   CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
#   CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
#   cargo test -p pagesight-model --lib --target aarch64-unknown-linux-gnu quant::gemm
# and `-p pagesight-index --lib … maxsim_neon` for the NEON MaxSim.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
target=aarch64-unknown-linux-gnu
command -v rustup >/dev/null || {
  echo "check-aarch64: rustup is needed to add the $target target (scripts/setup.sh installs it)" >&2
  exit 1
}
if ! rustup target list --installed | grep -qx "$target"; then
  echo "check-aarch64: adding the Rust target $target"
  rustup target add "$target"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "check-aarch64: installing the AArch64 C cross compiler"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
cargo check --locked --workspace --target "$target"
cargo check --locked -p pagesight-model -p pagesight-index --all-targets --target "$target"
