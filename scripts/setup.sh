#!/usr/bin/env bash
# Installs what Pagesight needs on a fresh Debian/Ubuntu machine, idempotently:
#   - system packages (C toolchain, unzip, python3-pip for fetching the PDFium wheel)
#   - a Rust toolchain when none is present
#   - libpdfium.so from the pinned PyPI wheel pypdfium2==5.15.2 (PDFium 8149) into vendor/pdfium/
set -euo pipefail
cd "$(dirname "$0")/.."

PYPDFIUM_VERSION=5.15.2
VENDOR=vendor/pdfium

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "setup: installing the Rust toolchain (rustup)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi

if [ ! -f "$VENDOR/libpdfium.so" ]; then
  echo "setup: fetching libpdfium from pypdfium2==$PYPDFIUM_VERSION"
  tmp=$(mktemp -d)
  # The wheel of this machine's architecture (x86_64 or aarch64).
  python3 -m pip download -q --no-deps --only-binary=:all: --platform "manylinux_2_17_$(uname -m)" \
    -d "$tmp" "pypdfium2==$PYPDFIUM_VERSION"
  mkdir -p "$VENDOR"
  unzip -q -j -o "$tmp"/pypdfium2-"$PYPDFIUM_VERSION"-*.whl pypdfium2_raw/libpdfium.so -d "$VENDOR"
  rm -rf "$tmp"
fi
echo "setup: libpdfium at $VENDOR/libpdfium.so"
