#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after `scripts/build-cuda.sh` here and a
# device call that carries `.device` (and `.whl` for the seed pipeline). Logs and JSON go under
# $OUT; a short table is printed last.
#
#   scripts/device-run.sh selftest                       # GPU proofs (PASS/FAIL lines)
#   scripts/device-run.sh ingest DIR [PAGES]             # pagesight bench ingest on DIR's PDFs
#   scripts/device-run.sh seed DIR [PAGES]               # bench/seed_pipeline.py on DIR's PDFs
#   scripts/device-run.sh gemm                           # bench gemm: cuBLASLt vs candle per layer shape
#   scripts/device-run.sh embed                          # bench embed, batch 4, plain and by section
#                                                        # (EMBED_BINS="pagesight pagesight-prev")
#   scripts/device-run.sh cli-ingest DIR [PAGES]         # `pagesight ingest` (the user's command) into a
#                                                        # fresh index, per binary in INGEST_BINS
#   scripts/device-run.sh journey DIR                    # bench journey (random:3b), cold then warm caches
#   scripts/device-run.sh engine-search [PAGES]          # bench engine-search (random:3b provenance)
#   scripts/device-run.sh search-compare DIR             # `pagesight search` on cuda against cpu, same index
#   scripts/device-run.sh cpu-query                      # the 3B query embedding on the host's CPU cores
#   scripts/device-run.sh cpu-gemm                       # the CPU query kernels per layer shape and thread count
#   scripts/device-run.sh selftest ingest DIR seed DIR   # several steps in one call
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
OUT=${OUT:-/tmp/pagesight-out}
mkdir -p "$OUT"
run_dir=/tmp/pagesight-device
mkdir -p "$run_dir"
summary="$OUT/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }

unpack() {
  local src=$1 dst=$2
  if command -v xz >/dev/null; then xz -dc "$src" > "$dst"
  else python3 -c "import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$src" "$dst"; fi
}
[ -f .device/pagesight.xz ] || { echo "no .device/pagesight.xz: run scripts/build-cuda.sh here and carry .device" >&2; exit 2; }
unpack .device/pagesight.xz "$run_dir/pagesight" && chmod +x "$run_dir/pagesight"
unpack .device/libpdfium.so.xz "$run_dir/libpdfium.so"
# An earlier build carried beside it (.device/pagesight-prev.xz) lets `embed` compare the two in
# one call (EMBED_BINS=pagesight,pagesight-prev).
if [ -f .device/pagesight-prev.xz ]; then
  unpack .device/pagesight-prev.xz "$run_dir/pagesight-prev" && chmod +x "$run_dir/pagesight-prev"
fi
export PDFIUM_LIB="$run_dir/libpdfium.so"

# CUDA libraries: the driver's libcuda is on the loader path; cuBLAS, cuRAND, cudart and NVRTC
# come from the Python venv's nvidia wheels (or a system toolkit).
libdirs=$(python3 - <<'PY'
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("site-packages")])
dirs = []
for r in roots:
    dirs += glob.glob(os.path.join(r, "nvidia", "*", "lib"))
dirs += glob.glob("/usr/local/cuda*/lib64") + glob.glob("/usr/local/cuda*/targets/x86_64-linux/lib")
want = ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudart.so.13", "libnvrtc.so.13")
keep = [d for d in dirs if any(os.path.exists(os.path.join(d, w)) for w in want)]
print(":".join(dict.fromkeys(keep)))
PY
)
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CUDA_CACHE_PATH=/tmp/pagesight-nvcache
# At most 8 files come back from $OUT: summary, and a log + JSON per step.
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
card=$(echo "$gpu" | cut -d, -f1 | tr ' ' '-')
missing=$(ldd "$run_dir/pagesight" | grep "not found")
if [ -n "$missing" ]; then echo "missing libraries:"; echo "$missing"; exit 3; fi
note "gpu: $gpu; binary: commit $(cat .device/commit 2>/dev/null)"
note "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# The seed pipeline's and the search reference's Python packages (colpali-engine, bitsandbytes,
# pypdfium2), carried as wheels in .whl.
install_wheels() {
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || status=1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
}

status=0
EMBED_QUANT=${EMBED_QUANT:-none,nf4}
EMBED_FUSED=${EMBED_FUSED:-1}
EMBED_LT=${EMBED_LT:-1}
EMBED_LORA=${EMBED_LORA:-unmerged}   # unmerged,merged: the adapter beside NF4, or merged first
EMBED_BATCH=${EMBED_BATCH:-4}
EMBED_COMPUTE=${EMBED_COMPUTE:-dtype}   # dtype,fp8: the NF4 layers' arithmetic
EMBED_BINS=${EMBED_BINS:-pagesight}     # several binaries, comma-separated (pagesight,pagesight-prev)
INGEST_BINS=${INGEST_BINS:-pagesight}
INGEST_BATCH=${INGEST_BATCH:-4}   # 4,8: one bench ingest run per batch size
INGEST_FP8_CODES=${INGEST_FP8_CODES:-1}   # 0,1: with --no-fp8-codes, and without
EMBED_FP8_CODES=${EMBED_FP8_CODES:-1}     # 0,1: with --no-fp8-codes, and without
CLI_INGEST_COMPUTE=${CLI_INGEST_COMPUTE:-default}
SEARCH_BINS=${SEARCH_BINS:-pagesight}
EMBED_ROWS=${EMBED_ROWS:-1}   # 1,0: a query's NF4 layers from the codes, or dequantised first
while [ $# -gt 0 ]; do
  step=$1; shift
  case $step in
    selftest)
      # SELFTEST_ARGS: e.g. "--batches 10" for shorter pipeline runs.
      "$run_dir/pagesight" bench gpu-selftest ${SELFTEST_ARGS:-} --json "$OUT/selftest.json" 2>&1 | tee "$OUT/selftest.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      grep -E "^(PASS|FAIL)" "$OUT/selftest.log" >> "$summary"
      ;;
    ingest)
      dir=$1; shift; pages=${1:-}
      if [[ "$pages" =~ ^[0-9]+$ ]]; then shift; else pages=200; fi
      # INGEST_DEVICES: one run per device list (e.g. "cuda:0 cuda:all cuda:0,0"), same pages.
      # INGEST_BINS (e.g. "pagesight pagesight-prev"): the same runs per binary.
      for bin in ${INGEST_BINS//,/ }; do
      # INGEST_BATCH (e.g. "4,8"): one run per batch size.
      for dev in ${INGEST_DEVICES:-cuda:0}; do
      for bs in ${INGEST_BATCH//,/ }; do
      # INGEST_FP8_CODES=0,1: with --no-fp8-codes (the GEMMs quantise bf16 rows), and without.
      for codes in ${INGEST_FP8_CODES//,/ }; do
        flag=(); [ "$codes" = 0 ] && flag=(--no-fp8-codes)
        note "-- $bin: bench ingest --device $dev --batch-size $bs ${flag[*]}"
        "$run_dir/$bin" bench ingest "$dir" --model random:3b --device "$dev" --transfer "${INGEST_TRANSFER:-sync,async,async-u8}" \
          --quant "${INGEST_QUANT:-nf4,none}" --compute "${INGEST_COMPUTE:-dtype}" --batch-size "$bs" --pages "$pages" "${flag[@]}" \
          --json "$OUT/ingest-$bin-${dev//[:,]/_}-b$bs-c$codes.json" 2>&1 | tee -a "$OUT/ingest.log" \
          | grep -E "^\| nf4|^\| none|replica" >> "$summary"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      done
      done
      done
      done
      ;;
    cli-ingest)
      # The user's command with its defaults (the device's best precision and transfer) into a
      # fresh index; one run per binary in INGEST_BINS (e.g. "pagesight pagesight-prev"), same pages.
      dir=$1; shift
      # CLI_INGEST_COMPUTE (e.g. "default,dtype,fp8"): one run per --compute; "default" passes none
      # (the device's best: fp8 on the MLPs where the card has FP8 tensor cores).
      for bin in ${INGEST_BINS//,/ }; do
      for compute in ${CLI_INGEST_COMPUTE//,/ }; do
        flag=(--compute "$compute"); [ "$compute" = default ] && flag=()
        ix=$(mktemp -d /tmp/pagesight-ix.XXXX)
        note "-- $bin: pagesight ingest $dir --model random:3b --compute $compute (defaults otherwise, fresh index)"
        "$run_dir/$bin" ingest "$dir" --index "$ix" --model random:3b "${flag[@]}" 2>&1 | tee -a "$OUT/cli-ingest.log" | grep -E "pages in|time by stage" >> "$summary"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        rm -rf "$ix"
      done
      done
      ;;
    seed)
      dir=$1; shift; pages=${1:-}
      if [[ "$pages" =~ ^[0-9]+$ ]]; then shift; else pages=200; fi
      install_wheels
      PYTHONUNBUFFERED=1 python3 bench/seed_pipeline.py "$dir" --pages "$pages" --quant "${SEED_QUANT:-nf4,bf16}" --json "$OUT/seed-$card.json" 2>&1 | tee "$OUT/seed.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      grep -E "^\| " "$OUT/seed.log" >> "$summary"
      ;;
    embed)
      # bench embed (EMBED_BATCH pages a forward): plain timings, then by section (on the card: the
      # time between events recorded in its stream).
      # EMBED_FUSED=1,0 compares the fused CUDA kernels with candle's own ops; EMBED_PROFILE=0 skips
      # the by-section run.
      for bin in ${EMBED_BINS//,/ }; do
      for q in ${EMBED_QUANT//,/ }; do
        for f in ${EMBED_FUSED//,/ }; do
          for lt in ${EMBED_LT//,/ }; do
          for scope in $(echo "${EMBED_SCOPE:-all}" | tr , " "); do
          for rows in ${EMBED_ROWS//,/ }; do
          for lora in ${EMBED_LORA//,/ }; do
          for batch in ${EMBED_BATCH//,/ }; do
          for compute in ${EMBED_COMPUTE//,/ }; do
          for codes in ${EMBED_FP8_CODES//,/ }; do
          for p in "" --profile; do
            [ -n "$p" ] && [ "${EMBED_PROFILE:-1}" = 0 ] && continue
            kernels=""; [ "$f" = 0 ] && kernels="--no-fused-kernels"; [ "$lt" = 0 ] && kernels="$kernels --no-cublaslt"
            [ "$lora" = merged ] && kernels="$kernels --merge-lora"
            [ "$rows" = 0 ] && kernels="$kernels --no-nf4-rows"
            [ "$codes" = 0 ] && kernels="$kernels --no-fp8-codes"
            # fp8 applies to NF4 only.
            [ "$compute" = fp8 ] && [ "$q" != nf4 ] && continue
            note "-- $bin: bench embed --quant $q --compute $compute --quant-scope $scope --batch $batch $p $kernels"
            "$run_dir/$bin" bench embed --model random:3b --device cuda --quant "$q" --compute "$compute" --quant-scope "$scope" --batch "$batch" --pages 3 $p $kernels 2>&1 | tee -a "$OUT/embed.log" | grep -vE "^(vision tower|loaded|note:|peak)" >> "$summary"
            [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
          done
          done
          done
          done
          done
          done
          done
          done
        done
      done
      done
      ;;
    cpu-query)
      # The 3B model's query embedding on the host's CPU cores (the CPU search path), per binary
      # in EMBED_BINS, for CPUQ_QUANT (none,nf4); CPUQ_DEVICE=cuda times it on the GPU instead,
      # CPUQ_PROFILE=1 adds the time by section, CPUQ_COMPARE=N compares N queries with the
      # general path (NF4 dequantised, the adapter as products of its own).
      for bin in ${EMBED_BINS//,/ }; do
        for q in $(echo "${CPUQ_QUANT:-none}" | tr , " "); do
          dev=${CPUQ_DEVICE:-cpu}; prof=""; [ "${CPUQ_PROFILE:-0}" = 1 ] && prof=--profile
          note "-- $bin: bench embed --device $dev --quant $q --queries 8 $prof ($(nproc) threads)"
          "$run_dir/$bin" bench embed --model random:3b --device "$dev" --quant "$q" --queries 8 $prof ${CPUQ_COMPARE:+--compare "$CPUQ_COMPARE"} 2>&1 | tee -a "$OUT/cpu-query.log" | grep -E "^(CPU kernels|query|GPU forward|vs general|  )" >> "$summary"
          [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        done
      done
      ;;
    cpu-gemm)
      # The few-row CPU kernels on the 3B layer shapes (`examples/cpu_gemm`, built here with
      # `cargo build --release -p pagesight-model --example cpu_gemm` and stripped into .device/),
      # per example binary in CPU_GEMM_BINS (e.g. cpu_gemm,cpu_gemm_spin: two builds) and thread
      # count in CPU_GEMM_THREADS: 28 rows, best of 3, plus the gate shape over 48 copies of its
      # weight (out of the caches).
      for bin in $(echo "${CPU_GEMM_BINS:-cpu_gemm}" | tr , " "); do
        [ -x ".device/$bin" ] || { note "-- no .device/$bin"; status=1; continue; }
        for t in $(echo "${CPU_GEMM_THREADS:-1,4,8,16}" | tr , " "); do
          note "-- $bin, $t threads"
          RAYON_NUM_THREADS=$t ".device/$bin" 28 3 48 2>&1 | tee "$OUT/$bin-$t.txt" | grep -E "copies|nf4" | grep -E "copies|avx512bf16|avx512 " >> "$summary"
          [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        done
      done
      ;;
    gemm)
      # The model's linear layers: cuBLASLt + bias epilogue against candle's matmul + bias pass.
      "$run_dir/pagesight" bench gemm 2>&1 | tee "$OUT/gemm.log" >> "$summary"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    ncu-embed)
      # Every kernel of a warm-up and a timed forward (EMBED_BATCH pages, EMBED_COMPUTE), timed by
      # Nsight Compute, summed by name. NCU_QUERIES=N: N query forwards only (the search path's
      # 3B query embedding), instead of pages.
      ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      what=(--batch "$EMBED_BATCH" --pages 1); label="warm-up + 1 timed forward of $EMBED_BATCH pages"
      if [ -n "${NCU_QUERIES:-}" ]; then what=(--queries "$NCU_QUERIES"); label="$NCU_QUERIES query forwards"; fi
      for q in ${EMBED_QUANT//,/ }; do
        "$ncu" --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv --page raw \
          --log-file "$OUT/ncu-$q.csv" "$run_dir/pagesight" bench embed --model random:3b --device cuda \
          --quant "$q" --compute "$EMBED_COMPUTE" "${what[@]}" > "$OUT/ncu-embed-$q.log" 2>&1 || status=1
        note "-- ncu, quant $q, compute $EMBED_COMPUTE ($label)"
        python3 tools/profiling/ncu_by_kernel.py "$OUT/ncu-$q.csv" >> "$summary" 2>&1 || tail -5 "$OUT/ncu-embed-$q.log" >> "$summary"
        # NCU_DETAIL=REGEX: the speed-of-light and occupancy sections of a few launches of the
        # kernels it names (after the warm-up's), for a kernel worth a closer look.
        if [ -n "${NCU_DETAIL:-}" ]; then
          "$ncu" --kernel-name "regex:$NCU_DETAIL" --launch-skip "${NCU_DETAIL_SKIP:-40}" --launch-count 3 \
            --section SpeedOfLight --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis \
            "$run_dir/pagesight" bench embed --model random:3b --device cuda --quant "$q" \
            --compute "$EMBED_COMPUTE" "${what[@]}" > "$OUT/ncu-detail-$q.txt" 2>&1 || status=1
          grep -E "^  [a-z_]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Executed Ipc A|Shared Memory Configuration Size|Dynamic Shared" \
            "$OUT/ncu-detail-$q.txt" >> "$summary"
        fi
      done
      ;;
    search)
      # GPU MaxSim (tensor scorer) against CPU exact on synthetic pages; no Python reference.
      pages=${1:-10000}; [[ "$pages" =~ ^[0-9,]+$ ]] && shift || pages=10000
      "$run_dir/pagesight" bench search --pages "$pages" --device cuda --python '' --only-best-isa \
        --queries 10 --work-dir /tmp/pagesight-bench-search 2>&1 | tee "$OUT/search.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      tail -40 "$OUT/search.log" >> "$summary"
      ;;
    search-ref)
      # CPU exact MaxSim against colpali-engine's scorer (torch f32 einsum) on the same vectors and
      # cores (carry .whl for colpali-engine).
      pages=${1:-10000}; [[ "$pages" =~ ^[0-9,]+$ ]] && shift || pages=10000
      install_wheels
      "$run_dir/pagesight" bench search --pages "$pages" --python python3 --only-best-isa --queries 10 \
        --work-dir /tmp/pagesight-bench-search 2>&1 | tee "$OUT/search-ref.log" \
        | grep -E "exact  |reference|torch|roofline|read bandwidth|× " >> "$summary"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    search-cpu)
      # CPU MaxSim only (no GPU scorer), once per configuration in SEARCH_CONFIGS (space-separated;
      # each a comma-separated list of environment settings, e.g.
      # "RAYON_THREAD_STACK_SIZE=4194304,RAYON_NUM_THREADS=8";
      # default: as built) and thread count in SEARCH_THREADS (space-separated; default all),
      # binary candidates from SEARCH_CANDIDATES. SEARCH_VARIANTS (e.g. huge-pages,pinned) times
      # exact again with the segments in huge-page memory and/or pinned threads; SEARCH_QUERIES
      # queries per run (default 10).
      pages=${1:-100000}; [[ "$pages" =~ ^[0-9,]+$ ]] && shift || pages=100000
      { lscpu | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA|L[23])"; echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"; } >> "$summary" 2>&1
      for config in ${SEARCH_CONFIGS:-AS_BUILT=1}; do
      for threads in ${SEARCH_THREADS:-$(nproc)}; do
        note "-- bench search (CPU), ${config//,/ } RAYON_NUM_THREADS=$threads"
        env ${config//,/ } RAYON_NUM_THREADS=$threads "$run_dir/pagesight" bench search --pages "$pages" --python '' --only-best-isa \
          --queries "${SEARCH_QUERIES:-10}" --candidates "${SEARCH_CANDIDATES:-100,200,400}" ${SEARCH_VARIANTS:+--exact-variants "$SEARCH_VARIANTS"} --work-dir /tmp/pagesight-bench-search 2>&1 \
          | tee -a "$OUT/search-cpu.log" | grep -E "exact  |binary \+|roofline|read bandwidth|mmapped|per CPU second|all-core FMA peak|median trial|FMA peak avx512f|memory latency|FMA window of|goal" >> "$summary"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      done
      done
      ;;
    search-compare)
      # The app's search path with the query model on the GPU (page tiles resident, fused MaxSim)
      # against the same search on the CPU: a random:tiny index of DIR's PDFs, three queries.
      dir=$1; shift
      ix=/tmp/pagesight-engine-search-index
      rm -rf "$ix"
      "$run_dir/pagesight" ingest "$dir" --index "$ix" --model random:tiny --device cuda > "$OUT/engine-search.log" 2>&1 || status=1
      for q in "a table of results" "installation instructions" "font encoding"; do
        for d in cuda cpu; do
          "$run_dir/pagesight" search "$q" --index "$ix" --device $d --top-k 10 --json 2>>"$OUT/engine-search.log" | tail -1 > "$run_dir/search-$d.json" || status=1
        done
        python3 tools/compare_search.py "$run_dir/search-cuda.json" "$run_dir/search-cpu.json" 2>&1 | tee -a "$summary" || status=1
      done
      ;;
    search-peers)
      # Our GPU scorer against the published fused MaxSim kernels (carry .whl: flash-maxsim,
      # late-interaction-kernels, colpali-engine) on the same vectors and card.
      pages=${1:-10000}; [[ "$pages" =~ ^[0-9,]+$ ]] && shift || pages=10000
      install_wheels
      "$run_dir/pagesight" bench search --pages "$pages" --device cuda --python '' --gpu-peers python3 \
        --reference-max-pages 100000 --only-best-isa --candidates 400 --queries "${SEARCH_QUERIES:-10}" \
        --work-dir /tmp/pagesight-bench-search --json > "$OUT/search-peers-$card.json" 2> >(tee "$OUT/search-peers.log" >&2)
      [ $? -eq 0 ] || status=1
      grep -E "pages in|peer |fused MaxSim kernel|exact  " "$OUT/search-peers.log" >> "$summary"
      ;;
    journey)
      # The app's path (bench journey) with `pagesight ingest`'s defaults and --model random:3b,
      # twice on one machine: first with cold caches (quantised weights, kernels), then warm;
      # JOURNEY_BIN=pagesight-prev runs the earlier build; JOURNEY_PASSES=warm runs one pass only
      # (after a step that warmed the caches, e.g. `ingest`).
      dir=$1; shift
      for pass in ${JOURNEY_PASSES:-cold warm}; do
        note "-- bench journey $dir --model random:3b ($pass caches)"
        rm -rf "/tmp/pagesight-journey-index-$pass"
        "$run_dir/${JOURNEY_BIN:-pagesight}" bench journey "$dir" --index "/tmp/pagesight-journey-index-$pass" --model random:3b --queries "${JOURNEY_QUERIES:-20}" \
          --json "$OUT/journey-$pass-$card.json" 2>&1 | tee -a "$OUT/journey.log" | grep -E "^\|" >> "$summary"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      done
      ;;
    qdrant)
      # bench qdrant on this host's CPUs (no GPU): the Qdrant server pinned to the upper half of
      # the cores, pagesight (export, local search, client) to the lower half. Needs
      # .device/qdrant/ (scripts/pack-qdrant.sh). QDRANT_PAGES (default 10000), QDRANT_QUERIES.
      [ -f .device/qdrant/qdrant.xz ] || { note "qdrant: no .device/qdrant (scripts/pack-qdrant.sh)"; status=1; continue; }
      cores=$(nproc); half=$((cores / 2))
      qdir=$(mktemp -d /tmp/pagesight-qdrant.XXXX)
      url=$(taskset -c "$half-$((cores - 1))" .device/qdrant/start.sh "$qdir/q") || { note "qdrant did not start"; status=1; continue; }
      note "-- bench qdrant: server on cores $half-$((cores - 1)), pagesight on 0-$((half - 1)) ($cores cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2))"
      taskset -c "0-$((half - 1))" "$run_dir/pagesight" bench qdrant --url "$url" --pages "${QDRANT_PAGES:-10000}" --queries "${QDRANT_QUERIES:-20}" \
        --work-dir "$qdir/work" --json "$OUT/qdrant-$card.json" 2>&1 | tee "$OUT/qdrant.log" | grep -E "pages ×|export|search" >> "$summary"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      kill "$(cat "$qdir/q/pid")" 2>/dev/null
      ;;
    engine-search)
      # Searches through the engine on synthetic pages stored with a random:3b provenance.
      pages=${1:-10000,100000}; [[ "$pages" =~ ^[0-9,]+$ ]] && shift || pages=10000,100000
      # SEARCH_BINS (e.g. pagesight,pagesight-prev): the same searches per binary, same pages;
      # ENGINE_SEARCH_DEVICE (e.g. cuda:0,0): the devices the page tiles are sharded over.
      for bin in ${SEARCH_BINS//,/ }; do
      note "-- $bin: bench engine-search --pages $pages --model random:3b ${ENGINE_SEARCH_DEVICE:+--device $ENGINE_SEARCH_DEVICE}"
      "$run_dir/$bin" bench engine-search --pages "$pages" --model random:3b --queries "${SEARCH_QUERIES:-20}" \
        ${ENGINE_SEARCH_DEVICE:+--device "$ENGINE_SEARCH_DEVICE"} \
        ${ENGINE_SEARCH_CPU:+--with-cpu} --work-dir /tmp/pagesight-bench-search --json "$OUT/engine-search-$bin-$card.json" 2>&1 \
        | tee -a "$OUT/engine-search.log" | grep -E "^\||built in" >> "$summary"
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      done
      ;;
    *) echo "unknown step '$step' (selftest | ingest DIR [PAGES] | seed DIR [PAGES] | embed)" >&2; exit 2 ;;
  esac
done
echo
echo "==== summary ($OUT/summary.txt) ===="
cat "$summary"
exit $status
