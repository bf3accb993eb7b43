#!/usr/bin/env bash
# Fetches the GPU benchmarks' real PDFs into the git-ignored folder corpus/bench: five TeX Live manuals
# from Debian's texlive-latex-base-doc (2210 pages in 9.8 MB, small enough to carry to the GPU machine
# beside the binary). Idempotent; needs apt's package lists (it downloads the .deb, installs nothing).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/corpus/bench"
files=(amsclass.pdf amsmath.pdf babel.pdf babelbib.pdf source3.pdf)
if [ -d "$dest" ] && [ "$(ls "$dest" | wc -l)" -eq "${#files[@]}" ]; then
  echo "corpus/bench: already there"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download texlive-latex-base-doc >/dev/null && dpkg -x texlive-latex-base-doc_*.deb x)
mkdir -p "$dest"
for f in "${files[@]}"; do
  src=$(find "$tmp/x" -name "$f" | head -1)
  [ -n "$src" ] || { echo "$f not in texlive-latex-base-doc" >&2; exit 1; }
  cp "$src" "$dest/"
done
echo "corpus/bench: ${#files[@]} PDFs, $(du -sh "$dest" | cut -f1)"
