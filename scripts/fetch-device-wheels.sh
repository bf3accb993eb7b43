#!/usr/bin/env bash
# Downloads the wheels bench/seed_pipeline.py needs on the GPU machine (which has torch and
# transformers but no internet) into the git-ignored folder .whl/, trimmed to fit one device
# call (64 MiB with the tree). Then: device call with carry [".whl", ".device"] and
#   scripts/device-run.sh seed PDF_DIR
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mkdir -p .whl
grep -qx '/.whl/' .gitignore 2>/dev/null || grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "$@"
}
# colpali-engine is installed with --no-deps there: it asks for peft < 0.21, the machine has
# 0.21, and peft is not imported on the inference path.
dl colpali-engine==0.3.18
dl pypdfium2==5.15.2
dl bitsandbytes==0.50.2
# bitsandbytes ships a library per CUDA/ROCm version (43 MB): keep CUDA 13.0's and the CPU one.
bnb=$(ls .whl/bitsandbytes-0.50.2-*.whl)
tmp=$(mktemp -d)
(cd "$tmp" && python3 -m zipfile -e "$root/$bnb" .)
find "$tmp/bitsandbytes" -name 'libbitsandbytes_*' ! -name '*cuda130*' ! -name '*_cpu.so' -delete
rm "$bnb"
(cd "$tmp" && python3 - "$root/$bnb" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for base, _, files in os.walk("."):
        for f in files:
            p = os.path.join(base, f)
            z.write(p, os.path.relpath(p, "."))
PY
)
rm -rf "$tmp"
ls -la .whl
du -sh .whl
