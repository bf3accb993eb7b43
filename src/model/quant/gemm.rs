//! Small-M matrix product on the CPU: `y = x · Wᵀ` for a few f32 rows `x` (a query's ~20
//! tokens) and a weight `W` `[out, in]` stored as f32, bf16, f16 or NF4, read once in its stored
//! precision. A query is ~20–25 rows through ~2.8 G weights; dequantising or widening a whole
//! weight first (what a general GEMM needs) writes and reads it again at 2–8× its size for only
//! ~20 uses of each value, so the weight is decoded in registers instead: bf16/f16 widened, NF4
//! codes looked up in the 16-entry table (`vpermps`: AVX-512 one `vpermps` over 16 entries, AVX2
//! two 8-entry ones and a blend on the code's bit 3) and scaled by their block's absmax.
//!
//! Written by hand: no maintained crate does a few-row product with 4-bit NF4 dequantised in
//! registers (candle's and `gemm`'s GEMMs take f32/f16/bf16 operands, and candle's quantised
//! matmul only knows the GGML formats).
//!
//! Shape of the computation: rayon splits the output columns into blocks; each block walks `in`
//! in chunks of [`KC`] values so the chunk of every query row stays in L1, and inside a chunk
//! runs tiles of up to `RMAX` rows × one output column: each weight vector is decoded once and
//! multiplied into `RMAX` row accumulators held in registers (FMA, f32 accumulate), the weights of
//! the next-but-one column prefetched (a column's chunk is a few cache lines a weight row away from
//! the last, which the hardware prefetchers do not follow), the rows copied to a stride that puts
//! them in different L1 sets. The weight
//! decode and the kernel are written once ([`Simd`] primitives, [`Stream`] weight formats, one
//! generic tile), and compiled per instruction set: AVX-512F, AVX2+FMA+F16C, and a portable one
//! the compiler vectorises as it can. The set is picked at run time and may be capped with
//! `PAGESIGHT_CPU_ISA=avx512|avx2|scalar` ([`crate::env_vars::CPU_ISA`]). Figures and accuracy:
//! `docs/benchmarks.md` ("Query embedding on the CPU"); per-layer timing: `examples/cpu_gemm.rs`.

use half::{bf16, f16};
use rayon::prelude::*;
use std::sync::OnceLock;

use super::nf4::{AbsmaxState, NF4_CODE};

/// Input values per chunk: `RMAX` rows × `KC` × 4 bytes stay in L1 (24 rows: 24 KiB).
const KC: usize = 256;

/// The instruction sets the kernels are compiled for, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuIsa {
    /// Plain Rust (8-wide arrays the compiler vectorises with the target's baseline).
    Scalar,
    /// 256-bit FMA with F16C.
    Avx2,
    /// 512-bit (AVX-512F).
    Avx512,
}

impl CpuIsa {
    pub const ALL: [CpuIsa; 3] = [CpuIsa::Avx512, CpuIsa::Avx2, CpuIsa::Scalar];

    pub fn name(self) -> &'static str {
        match self {
            CpuIsa::Scalar => "scalar",
            CpuIsa::Avx2 => "avx2",
            CpuIsa::Avx512 => "avx512",
        }
    }

    /// f32 lanes of the set's vectors (its kernel's `Simd::LANES`).
    fn lanes(self) -> usize {
        match self {
            CpuIsa::Avx512 => 16,
            CpuIsa::Scalar | CpuIsa::Avx2 => 8,
        }
    }

    pub fn parse(s: &str) -> Option<CpuIsa> {
        CpuIsa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this CPU runs the set.
    pub fn available(self) -> bool {
        match self {
            CpuIsa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f") && CpuIsa::Avx2.available()
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best set this CPU runs, at most `cap`.
    pub fn best_up_to(cap: CpuIsa) -> CpuIsa {
        CpuIsa::ALL
            .into_iter()
            .find(|i| *i <= cap && i.available())
            .unwrap_or(CpuIsa::Scalar)
    }
}

/// The instruction set the kernels use: the best this CPU runs, capped by `PAGESIGHT_CPU_ISA`
/// (decided once per process; an unknown value is ignored with a warning), or on this thread
/// what [`with_isa`] sets.
pub fn isa() -> CpuIsa {
    if let Some(i) = ISA_HERE.with(|c| c.get()) {
        return i;
    }
    static ISA: OnceLock<CpuIsa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var(crate::env_vars::CPU_ISA) {
            Ok(v) => CpuIsa::parse(&v).unwrap_or_else(|| {
                tracing::warn!(
                    "{}={v:?} is not avx512, avx2 or scalar: ignored",
                    crate::env_vars::CPU_ISA
                );
                CpuIsa::Avx512
            }),
            Err(_) => CpuIsa::Avx512,
        };
        CpuIsa::best_up_to(cap)
    })
}

thread_local! {
    static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static QUERIES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ISA_HERE: std::cell::Cell<Option<CpuIsa>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the kernels of this thread on the best set up to `cap` (tests, benches).
pub fn with_isa<T>(cap: CpuIsa, f: impl FnOnce() -> T) -> T {
    let before = ISA_HERE.with(|c| c.replace(Some(CpuIsa::best_up_to(cap))));
    let out = f();
    ISA_HERE.with(|c| c.set(before));
    out
}

/// Whether the layers on this thread use these kernels for few rows: while embedding queries
/// ([`for_queries`]) and unless switched off ([`without_kernels`]).
pub fn kernels_enabled() -> bool {
    QUERIES.with(|c| c.get()) && !OFF.with(|c| c.get())
}

/// Runs `f` (a query batch's forward) with the few-row kernels on for this thread. Pages never
/// take them: which path a layer takes would then depend on how many rows its batch has, and a
/// page re-embedded in another batch (a re-run after a crash, an incremental ingest) must come
/// out bit-identical to the first time.
pub fn for_queries<T>(f: impl FnOnce() -> T) -> T {
    let before = QUERIES.with(|c| c.replace(true));
    let out = f();
    QUERIES.with(|c| c.set(before));
    out
}

/// Runs `f` with the few-row kernels off on this thread: linear layers take the general path
/// (NF4 dequantised into the scratch, half-precision widened, then candle's GEMM), the path
/// queries took before these kernels; for comparing the two.
pub fn without_kernels<T>(f: impl FnOnce() -> T) -> T {
    let before = OFF.with(|c| c.replace(true));
    let out = f();
    OFF.with(|c| c.set(before));
    out
}

/// The name of [`isa`].
pub fn isa_name() -> &'static str {
    isa().name()
}

/// An NF4 weight's codes and block scales, as [`super::nf4::Nf4Weight`] stores them.
#[derive(Clone, Copy)]
pub struct Nf4View<'a> {
    /// Two codes a byte, first element in the high nibble.
    pub packed: &'a [u8],
    pub absmax: &'a AbsmaxState,
    pub blocksize: usize,
}

/// A weight `[out, in]`, row-major, in its stored precision.
#[derive(Clone, Copy)]
pub enum Weight<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    F16(&'a [f16]),
    Nf4(Nf4View<'a>),
}

/// `y = x · Wᵀ` for `x` `rows × in` (row-major f32): `rows × out`, f32, on all cores with the
/// instruction set of [`isa`].
pub fn matmul_rows(w: Weight, out: usize, inp: usize, x: &[f32], rows: usize) -> Vec<f32> {
    matmul_rows_isa(isa(), w, out, inp, x, rows)
}

/// [`matmul_rows`] with a given instruction set (which must be available; tests and benches).
pub fn matmul_rows_isa(
    isa: CpuIsa,
    w: Weight,
    out: usize,
    inp: usize,
    x: &[f32],
    rows: usize,
) -> Vec<f32> {
    assert!(
        isa.available(),
        "{} is not available on this CPU",
        isa.name()
    );
    assert_eq!(x.len(), rows * inp, "x is not rows × in");
    let numel = out * inp;
    match w {
        Weight::F32(v) => assert_eq!(v.len(), numel),
        Weight::Bf16(v) => assert_eq!(v.len(), numel),
        Weight::F16(v) => assert_eq!(v.len(), numel),
        Weight::Nf4(n) => {
            assert_eq!(n.packed.len(), numel.div_ceil(2));
            assert_eq!(n.absmax.block_count(), numel.div_ceil(n.blocksize.max(1)));
        }
    }
    if rows == 0 || out == 0 {
        return vec![0f32; rows * out];
    }
    let cols = column_block(out);
    let lanes = isa.lanes();
    let (packed, at) = packed_rows(x, rows, inp, lanes);
    let packed = &packed[at..];
    // [out][rows]: each task's block of columns is one contiguous chunk.
    let mut by_column = vec![0f32; out * rows];
    by_column
        .par_chunks_mut(cols * rows)
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (b, chunk)| {
            let o0 = b * cols;
            let job = Job {
                x,
                packed,
                rows,
                inp,
                o0,
                o1: o0 + chunk.len() / rows,
            };
            scratch.partial.resize(chunk.len() * MAX_LANES, 0.0);
            let mut sums = Sums {
                out: chunk,
                partial: &mut scratch.partial,
            };
            match w {
                Weight::F32(v) => job.run(isa, &Dense(v.as_ptr()), &mut sums),
                Weight::Bf16(v) => job.run(isa, &Dense(v.as_ptr()), &mut sums),
                Weight::F16(v) => job.run(isa, &Dense(v.as_ptr()), &mut sums),
                Weight::Nf4(n) => {
                    let stream = Nf4Stream::for_columns(n, inp, o0, job.o1, &mut scratch.absmax);
                    job.run(isa, &stream, &mut sums)
                }
            }
        });
    let mut y = vec![0f32; rows * out];
    for (o, col) in by_column.chunks_exact(rows).enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * out + o] = *v;
        }
    }
    y
}

/// The widest vector, in f32 lanes.
const MAX_LANES: usize = 16;

/// A thread's working memory, reused across its tasks.
#[derive(Default)]
struct Scratch {
    /// The task's absmax values (NF4).
    absmax: Vec<f32>,
    /// See [`Sums::partial`].
    partial: Vec<f32>,
}

/// Where a task's tiles add up.
struct Sums<'a> {
    /// `[o1 - o0][rows]`, the task's share of the result (zeroed).
    out: &'a mut [f32],
    /// One vector of running sums per output and row between `KC` chunks (lanes not yet
    /// added: each row's sum is reduced across lanes once, after its last chunk).
    partial: &'a mut [f32],
}

/// The whole vectors of `x` (`rows × in`, `in` rounded down to `lanes`) laid out
/// `[in / lanes][rows][lanes]`, 64-byte aligned from the returned offset: at each step a tile's
/// rows are one contiguous run, so its loads are a constant displacement from one pointer that
/// moves once per step. With the rows `in` apart (the plain layout) each load needed its own
/// address add, and those adds took the FMA ports' issue slots; rows 8 KiB apart also met in one
/// L1 set, and 32- or 64-byte loads from a 16-byte-aligned buffer split cache lines.
fn packed_rows(x: &[f32], rows: usize, inp: usize, lanes: usize) -> (Vec<f32>, usize) {
    let vectors = inp / lanes;
    let mut packed = vec![0f32; vectors * rows * lanes + 16];
    let at = packed.as_ptr().align_offset(64).min(15);
    let dst = &mut packed[at..];
    for (r, row) in x.chunks_exact(inp.max(1)).enumerate() {
        for (v, src) in row.chunks_exact(lanes).enumerate() {
            dst[(v * rows + r) * lanes..][..lanes].copy_from_slice(src);
        }
    }
    (packed, at)
}

/// Output columns per rayon task: about four tasks per thread, 4–64 columns.
fn column_block(out: usize) -> usize {
    (out / (rayon::current_num_threads() * 4)).clamp(4, 64)
}

/// SIMD primitives one instruction set provides; everything else is generic over them.
trait Simd {
    type V: Copy;
    const LANES: usize;
    /// Rows per register tile.
    const RMAX: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(v: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a · b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn hsum(v: Self::V) -> f32;
    /// `LANES` bf16 values widened.
    unsafe fn bf16(p: *const u16) -> Self::V;
    /// `LANES` f16 values widened.
    unsafe fn f16(p: *const u16) -> Self::V;
    /// `table[code]` of the `LANES` codes in `LANES / 2` bytes, first code in the high nibble
    /// (`table`: 16 values, `NF4_CODE` or a block's codes already scaled by its absmax).
    unsafe fn nf4(p: *const u8, table: *const f32) -> Self::V;
    /// [`Job::tile`] for `n ≤ RMAX` rows (one instance per row count: see [`tile_by_rows`]).
    unsafe fn tile<W: Stream>(
        job: &Job,
        w: &W,
        n: usize,
        r0: usize,
        k: (usize, usize, usize),
        cols: (usize, usize),
        sums: &mut Sums,
    );
}

/// Implements [`Simd::tile`] for the row counts listed (1..=RMAX).
macro_rules! tile_by_rows {
    ($($r:literal)*) => {
        #[inline(always)]
        unsafe fn tile<W: Stream>(
            job: &Job,
            w: &W,
            n: usize,
            r0: usize,
            k: (usize, usize, usize),
            cols: (usize, usize),
            sums: &mut Sums,
        ) {
            match n {
                $($r => job.tile::<Self, W, $r>(w, r0, k, cols, sums),)*
                _ => unreachable!("tile of {n} rows"),
            }
        }
    };
}

/// How many columns ahead [`Job::tile`] prefetches the weights.
const PREFETCH_COLUMNS: usize = 2;

/// Asks for the cache line at `p` in L1 (a hint: any address is fine).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is in every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A weight format: its values as vectors, and one by one for the tails.
trait Stream: Sync {
    /// Whether a vector costs several instructions (NF4's table lookups and scaling): then a
    /// column's chunk is decoded once for several row tiles. Widening bf16/f16 costs about what
    /// the extra store and load would.
    const DECODES: bool = false;
    /// Whether `[0, k_end)` of every row may be read as vectors of `lanes` (`k_end` a multiple
    /// of `lanes`); the rest goes through [`Stream::get`].
    fn vector_end(&self, inp: usize, lanes: usize) -> usize {
        inp - inp % lanes
    }
    /// `W[o, k .. k + LANES]`.
    unsafe fn vec<S: Simd>(&self, o: usize, k: usize, inp: usize) -> S::V;
    /// `W[o, k0..k1]` (whole vectors) as f32 at `dst`.
    #[inline(always)]
    unsafe fn decode<S: Simd>(
        &self,
        o: usize,
        (k0, k1): (usize, usize),
        inp: usize,
        dst: *mut f32,
    ) {
        let mut k = k0;
        while k < k1 {
            S::store(dst.add(k - k0), self.vec::<S>(o, k, inp));
            k += S::LANES;
        }
    }
    /// Where `W[o, k]` is stored (possibly past the end: only prefetched).
    fn addr(&self, o: usize, k: usize, inp: usize) -> *const u8;
    /// `W[o, k]`.
    fn get(&self, o: usize, k: usize, inp: usize) -> f32;
}

/// A dense weight of element `T`.
struct Dense<T>(*const T);
// SAFETY: a read-only pointer into a slice that outlives the product (`matmul_rows_isa`).
unsafe impl<T> Sync for Dense<T> {}

/// A dense element type: how a vector and one value are widened.
trait Element: Copy {
    unsafe fn vec<S: Simd>(p: *const Self) -> S::V;
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    #[inline(always)]
    unsafe fn vec<S: Simd>(p: *const f32) -> S::V {
        S::load(p)
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for bf16 {
    #[inline(always)]
    unsafe fn vec<S: Simd>(p: *const bf16) -> S::V {
        S::bf16(p.cast())
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

impl Element for f16 {
    #[inline(always)]
    unsafe fn vec<S: Simd>(p: *const f16) -> S::V {
        S::f16(p.cast())
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl<T: Element> Stream for Dense<T> {
    #[inline(always)]
    unsafe fn vec<S: Simd>(&self, o: usize, k: usize, inp: usize) -> S::V {
        T::vec::<S>(self.0.add(o * inp + k))
    }
    #[inline(always)]
    fn addr(&self, o: usize, k: usize, inp: usize) -> *const u8 {
        self.0.wrapping_add(o * inp + k).cast()
    }
    fn get(&self, o: usize, k: usize, inp: usize) -> f32 {
        // SAFETY: o < out and k < in, checked by the caller's loops against the asserted length.
        unsafe { (*self.0.add(o * inp + k)).to_f32() }
    }
}

/// NF4 codes of the columns `o0..o1`, with the absmax of the blocks they cover decoded once per
/// task (`absmax[b - first_block]`).
struct Nf4Stream<'a> {
    packed: &'a [u8],
    absmax: &'a [f32],
    first_block: usize,
    blocksize: usize,
    /// log2(blocksize) when it is a power of two ≥ 16 (then a vector never straddles a block).
    shift: Option<u32>,
}

impl<'a> Nf4Stream<'a> {
    fn for_columns(
        n: Nf4View<'a>,
        inp: usize,
        o0: usize,
        o1: usize,
        absmax: &'a mut Vec<f32>,
    ) -> Nf4Stream<'a> {
        let bs = n.blocksize.max(1);
        let first_block = o0 * inp / bs;
        let end_block = (o1 * inp).div_ceil(bs);
        absmax.resize(end_block - first_block, 0.0);
        n.absmax.decode_range(first_block, absmax);
        let shift = (bs.is_power_of_two() && bs >= 16).then(|| bs.trailing_zeros());
        Nf4Stream {
            packed: n.packed,
            absmax,
            first_block,
            blocksize: bs,
            shift,
        }
    }
}

impl Stream for Nf4Stream<'_> {
    const DECODES: bool = true;
    fn vector_end(&self, inp: usize, lanes: usize) -> usize {
        // Whole vectors start on even elements (whole bytes) and inside one block.
        if self.shift.is_some() && inp.is_multiple_of(16) {
            inp - inp % lanes
        } else {
            0
        }
    }
    #[inline(always)]
    unsafe fn vec<S: Simd>(&self, o: usize, k: usize, inp: usize) -> S::V {
        let flat = o * inp + k;
        let shift = self.shift.unwrap_or(0);
        let scale = *self
            .absmax
            .get_unchecked((flat >> shift) - self.first_block);
        S::mul(
            S::nf4(self.packed.as_ptr().add(flat / 2), NF4_CODE.as_ptr()),
            S::splat(scale),
        )
    }
    /// Block by block: the 16 codes scaled by the block's absmax once, then each vector a table
    /// lookup (no multiply per vector).
    #[inline(always)]
    unsafe fn decode<S: Simd>(
        &self,
        o: usize,
        (k0, k1): (usize, usize),
        inp: usize,
        dst: *mut f32,
    ) {
        let shift = self.shift.unwrap_or(0);
        let mut table = CodeTable([0.0; 16]);
        let table = table.0.as_mut_ptr();
        let mut k = k0;
        while k < k1 {
            let flat = o * inp + k;
            let block = flat >> shift;
            let scale = S::splat(*self.absmax.get_unchecked(block - self.first_block));
            let mut i = 0;
            while i < 16 {
                S::store(
                    table.add(i),
                    S::mul(S::load(NF4_CODE.as_ptr().add(i)), scale),
                );
                i += S::LANES;
            }
            let block_end = (((block + 1) << shift) - o * inp).min(k1);
            while k < block_end {
                let v = S::nf4(self.packed.as_ptr().add((o * inp + k) / 2), table);
                S::store(dst.add(k - k0), v);
                k += S::LANES;
            }
        }
    }
    #[inline(always)]
    fn addr(&self, o: usize, k: usize, inp: usize) -> *const u8 {
        self.packed.as_ptr().wrapping_add((o * inp + k) / 2)
    }
    fn get(&self, o: usize, k: usize, inp: usize) -> f32 {
        let flat = o * inp + k;
        let byte = self.packed[flat / 2];
        let code = if flat.is_multiple_of(2) {
            byte >> 4
        } else {
            byte & 0x0f
        };
        NF4_CODE[code as usize] * self.absmax[flat / self.blocksize - self.first_block]
    }
}

/// A column's chunk of weights decoded to f32 (`values[k - k0]`), read by the row tiles instead
/// of the stored format; addresses (prefetches) still point into the stored weight.
struct Decoded<'a, W> {
    values: ChunkValues,
    source: &'a W,
    k0: usize,
}

/// [`KC`] values, aligned for any vector load.
#[repr(align(64))]
struct ChunkValues([f32; KC]);

/// The 16 NF4 codes of one block, scaled by its absmax.
#[repr(align(64))]
struct CodeTable([f32; 16]);

impl<W: Stream> Decoded<'_, W> {
    /// Decodes column `o`, inputs `k0..k1` (whole vectors).
    #[inline(always)]
    unsafe fn fill<S: Simd>(&mut self, o: usize, k0: usize, k1: usize, inp: usize) {
        self.k0 = k0;
        self.source
            .decode::<S>(o, (k0, k1), inp, self.values.0.as_mut_ptr());
    }
}

impl<W: Stream> Stream for Decoded<'_, W> {
    #[inline(always)]
    unsafe fn vec<S: Simd>(&self, _o: usize, k: usize, _inp: usize) -> S::V {
        S::load(self.values.0.as_ptr().add(k - self.k0))
    }
    #[inline(always)]
    fn addr(&self, o: usize, k: usize, inp: usize) -> *const u8 {
        self.source.addr(o, k, inp)
    }
    fn get(&self, o: usize, k: usize, inp: usize) -> f32 {
        self.source.get(o, k, inp)
    }
}

/// One task: the columns `o0..o1` of the product for every row.
struct Job<'a> {
    /// The input rows, `in` floats apart (for the tail).
    x: &'a [f32],
    /// The input's whole vectors, see [`packed_rows`].
    packed: &'a [f32],
    rows: usize,
    inp: usize,
    o0: usize,
    o1: usize,
}

impl Job<'_> {
    /// Fills `sums.out` on `isa`.
    fn run<W: Stream>(&self, isa: CpuIsa, w: &W, sums: &mut Sums) {
        let k_end = match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is available (asserted by `matmul_rows_isa`).
            CpuIsa::Avx512 => unsafe { x86::avx512(self, w, sums) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is available (asserted by `matmul_rows_isa`).
            CpuIsa::Avx2 => unsafe { x86::avx2(self, w, sums) },
            // SAFETY: the portable kernel's primitives read in bounds as every kernel's do.
            _ => unsafe { self.columns::<Portable, W>(w, sums) },
        };
        self.tail(w, k_end, sums.out);
    }

    /// The vector part, `k < k_end`, of every column; returns `k_end`.
    #[inline(always)]
    unsafe fn columns<S: Simd, W: Stream>(&self, w: &W, sums: &mut Sums) -> usize {
        let k_end = w.vector_end(self.inp, S::LANES);
        let tiles = self.rows.div_ceil(S::RMAX);
        // Even tiles: 22 rows on 12-row tiles are 11 + 11, not 12 + 10.
        let tile = self.rows.div_ceil(tiles);
        let mut decoded = Decoded::<W> {
            values: ChunkValues([0.0; KC]),
            source: w,
            k0: 0,
        };
        let mut k0 = 0;
        while k0 < k_end {
            let k1 = (k0 + KC).min(k_end);
            let k = (k0, k1, k_end);
            if tiles > 1 && W::DECODES {
                // Several row tiles: each column's chunk decoded once into L1 for all of them,
                // not once per tile.
                for o in self.o0..self.o1 {
                    decoded.fill::<S>(o, k0, k1, self.inp);
                    let mut r0 = 0;
                    while r0 < self.rows {
                        let n = tile.min(self.rows - r0);
                        S::tile(self, &decoded, n, r0, k, (o, o + 1), sums);
                        r0 += n;
                    }
                }
            } else {
                let mut r0 = 0;
                while r0 < self.rows {
                    let n = tile.min(self.rows - r0);
                    S::tile(self, w, n, r0, k, (self.o0, self.o1), sums);
                    r0 += n;
                }
            }
            k0 = k1;
        }
        k_end
    }

    /// Rows `r0 .. r0 + R`, inputs `k0..k1` (whole vectors; `k = (k0, k1, k_end)`) of every
    /// column: running sums from `sums.partial` (none at `k0 = 0`) back to it, or after the last
    /// chunk (`k1 = k_end`) reduced into `sums.out`.
    #[inline(always)]
    unsafe fn tile<S: Simd, W: Stream, const R: usize>(
        &self,
        w: &W,
        r0: usize,
        (k0, k1, k_end): (usize, usize, usize),
        (c0, c1): (usize, usize),
        sums: &mut Sums,
    ) {
        let step = self.rows * S::LANES;
        let x0 = self
            .packed
            .as_ptr()
            .add((k0 / S::LANES) * step + r0 * S::LANES);
        for o in c0..c1 {
            let at = (o - self.o0) * self.rows + r0;
            let part = sums.partial.as_mut_ptr().add(at * S::LANES);
            let mut acc: [S::V; R] = if k0 == 0 {
                [S::zero(); R]
            } else {
                std::array::from_fn(|i| S::load(part.add(i * S::LANES)))
            };
            let mut k = k0;
            let mut x = x0;
            while k < k1 {
                // The weights two columns on, at this k: a column's chunk is a few cache lines
                // 1–2 rows of the weight apart from the last, which the hardware prefetchers
                // do not foresee.
                prefetch(w.addr(o + PREFETCH_COLUMNS, k, self.inp));
                let wv = w.vec::<S>(o, k, self.inp);
                for (i, s) in acc.iter_mut().enumerate() {
                    *s = S::fma(S::load(x.add(i * S::LANES)), wv, *s);
                }
                x = x.add(step);
                k += S::LANES;
            }
            if k1 == k_end {
                for (out, s) in sums.out[at..at + R].iter_mut().zip(acc) {
                    *out += S::hsum(s);
                }
            } else {
                for (i, s) in acc.into_iter().enumerate() {
                    S::store(part.add(i * S::LANES), s);
                }
            }
        }
    }

    /// Inputs `k_end..in`, one at a time.
    fn tail<W: Stream>(&self, w: &W, k_end: usize, acc: &mut [f32]) {
        for k in k_end..self.inp {
            for o in self.o0..self.o1 {
                let wv = w.get(o, k, self.inp);
                let col = &mut acc[(o - self.o0) * self.rows..][..self.rows];
                for (r, a) in col.iter_mut().enumerate() {
                    *a += self.x[r * self.inp + k] * wv;
                }
            }
        }
    }
}

/// Portable primitives: 8-wide arrays, plain arithmetic.
struct Portable;

impl Simd for Portable {
    type V = [f32; 8];
    const LANES: usize = 8;
    const RMAX: usize = 8;
    tile_by_rows!(1 2 3 4 5 6 7 8);
    #[inline(always)]
    unsafe fn zero() -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> [f32; 8] {
        [v; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        p.cast::<[f32; 8]>().read_unaligned()
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        p.cast::<[f32; 8]>().write_unaligned(v)
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn hsum(v: [f32; 8]) -> f32 {
        v.iter().sum()
    }
    #[inline(always)]
    unsafe fn bf16(p: *const u16) -> [f32; 8] {
        let h = p.cast::<[u16; 8]>().read_unaligned();
        std::array::from_fn(|i| f32::from_bits((h[i] as u32) << 16))
    }
    #[inline(always)]
    unsafe fn f16(p: *const u16) -> [f32; 8] {
        let h = p.cast::<[u16; 8]>().read_unaligned();
        std::array::from_fn(|i| f16::from_bits(h[i]).to_f32())
    }
    #[inline(always)]
    unsafe fn nf4(p: *const u8, table: *const f32) -> [f32; 8] {
        let b = p.cast::<[u8; 4]>().read_unaligned();
        std::array::from_fn(|i| {
            let byte = b[i / 2];
            let code = if i.is_multiple_of(2) {
                byte >> 4
            } else {
                byte & 0x0f
            };
            *table.add(code as usize)
        })
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Job, Simd, Stream, Sums};
    use std::arch::x86_64::*;

    /// The vector part of a task with AVX2+FMA+F16C; returns where it stopped.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn avx2<W: Stream>(job: &Job, w: &W, sums: &mut Sums) -> usize {
        job.columns::<Avx2, W>(w, sums)
    }

    /// The vector part of a task with AVX-512F; returns where it stopped.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn avx512<W: Stream>(job: &Job, w: &W, sums: &mut Sums) -> usize {
        job.columns::<Avx512, W>(w, sums)
    }

    pub(super) struct Avx2;

    /// Shift counts that put the first code of each byte (high nibble) in even lanes.
    const NIBBLE_SHIFT: [i32; 16] = [4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0];

    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        // 12 accumulators of 16 registers, the rest for the weight and its decode.
        const RMAX: usize = 13;
        tile_by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13);
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }
        #[inline(always)]
        unsafe fn bf16(p: *const u16) -> __m256 {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
        }
        #[inline(always)]
        unsafe fn f16(p: *const u16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
        }
        #[inline(always)]
        unsafe fn nf4(p: *const u8, table: *const f32) -> __m256 {
            // 4 bytes → each byte twice → 8 lanes of (byte >> 4, byte): the low 3 bits index
            // each half of the table, bit 3 (moved to the sign) picks the half.
            let b = _mm_cvtsi32_si128(p.cast::<i32>().read_unaligned());
            let idx = _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
            let idx = _mm256_srlv_epi32(idx, _mm256_loadu_si256(NIBBLE_SHIFT.as_ptr().cast()));
            let lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), idx);
            let hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table.add(8)), idx);
            _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)))
        }
    }

    pub(super) struct Avx512;

    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        // 24 accumulators of 32 registers.
        const RMAX: usize = 28;
        tile_by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28);
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
        #[inline(always)]
        unsafe fn bf16(p: *const u16) -> __m512 {
            let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
            _mm512_castsi512_ps(_mm512_slli_epi32(h, 16))
        }
        #[inline(always)]
        unsafe fn f16(p: *const u16) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
        }
        #[inline(always)]
        unsafe fn nf4(p: *const u8, table: *const f32) -> __m512 {
            // 8 bytes → each byte twice → 16 lanes of (byte >> 4, byte); `vpermps` reads the
            // low 4 bits: the whole table in one register.
            let b = _mm_loadl_epi64(p.cast());
            let idx = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
            let idx = _mm512_srlv_epi32(idx, _mm512_loadu_si512(NIBBLE_SHIFT.as_ptr().cast()));
            _mm512_permutexvar_ps(idx, _mm512_loadu_ps(table))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::nf4::Nf4Weight;

    /// Deterministic values in [-1, 1) (an LCG; no rand dependency in this crate).
    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The plain product in f64 of widened weights `w` (`out × in`).
    fn reference(w: &[f32], out: usize, inp: usize, x: &[f32], rows: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * out];
        for r in 0..rows {
            for o in 0..out {
                let s: f64 = (0..inp)
                    .map(|k| x[r * inp + k] as f64 * w[o * inp + k] as f64)
                    .sum();
                y[r * out + o] = s as f32;
            }
        }
        y
    }

    /// max |a − b| / max |b|.
    fn rel_err(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    fn isas() -> Vec<CpuIsa> {
        let found: Vec<CpuIsa> = CpuIsa::ALL.into_iter().filter(|i| i.available()).collect();
        assert!(found.contains(&CpuIsa::Scalar));
        found
    }

    /// Shapes whose `in` and `out` are not multiples of any vector, chunk or column block, and
    /// some that are (the vector part alone, and several `KC` chunks).
    const SHAPES: [(usize, usize); 7] = [
        (1, 1),
        (3, 7),
        (13, 17),
        (37, 70),
        (70, 257),
        (5, 600),
        (64, 512),
    ];

    #[test]
    fn dense_formats_match_the_plain_product_on_every_isa() {
        for isa in isas() {
            for (si, &(out, inp)) in SHAPES.iter().enumerate() {
                let w = values(si as u64, out * inp);
                let w16: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
                let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let wide16: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
                let wideh: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
                for rows in 1..=33 {
                    let x = values(100 + rows as u64, rows * inp);
                    let cases = [
                        ("f32", Weight::F32(&w), &w),
                        ("bf16", Weight::Bf16(&w16), &wide16),
                        ("f16", Weight::F16(&wh), &wideh),
                    ];
                    for (name, weight, wide) in cases {
                        let y = matmul_rows_isa(isa, weight, out, inp, &x, rows);
                        let err = rel_err(&y, &reference(wide, out, inp, &x, rows));
                        assert!(
                            err < 1e-5,
                            "{} {name} {out}×{inp}, {rows} rows: relative error {err}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nf4_matches_dequantise_then_matmul_on_every_isa() {
        // (out, in, blocksize): 96 and 48 inputs make blocks of 64 straddle weight rows with
        // vectors inside blocks; 70 and 75 inputs are not whole vectors (odd rows start on odd
        // nibbles for 75); 256 and 2048 are the model's shape class.
        let shapes = [
            (5, 96, 64),
            (37, 48, 64),
            (9, 70, 64),
            (11, 75, 64),
            (33, 256, 64),
            (3, 2048, 128),
            (21, 64, 32),
            (7, 64, 6),
        ];
        for isa in isas() {
            for (si, &(out, inp, bs)) in shapes.iter().enumerate() {
                for double in [false, true] {
                    let dense = values(7 + si as u64, out * inp);
                    let q = Nf4Weight::quantize(&dense, (out, inp), bs, double).unwrap();
                    let wide: Vec<f32> = q.dequantize::<f32>().unwrap();
                    let view = Nf4View {
                        packed: &q.packed,
                        absmax: &q.absmax,
                        blocksize: q.blocksize,
                    };
                    for rows in 1..=33 {
                        let x = values(200 + rows as u64, rows * inp);
                        let y = matmul_rows_isa(isa, Weight::Nf4(view), out, inp, &x, rows);
                        let err = rel_err(&y, &reference(&wide, out, inp, &x, rows));
                        assert!(
                            err < 1e-5,
                            "{} nf4 {out}×{inp} bs {bs} double {double}, {rows} rows: {err}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn absmax_range_decodes_as_the_whole() {
        let dense = values(3, 40 * 64);
        for double in [false, true] {
            let q = Nf4Weight::quantize(&dense, (40, 64), 64, double).unwrap();
            let all = q.absmax.decode();
            let mut part = vec![0f32; 17];
            q.absmax.decode_range(9, &mut part);
            assert_eq!(part, all[9..26]);
        }
    }

    #[test]
    fn isa_names_parse_and_the_cap_holds() {
        for i in CpuIsa::ALL {
            assert_eq!(CpuIsa::parse(i.name()), Some(i));
            assert!(CpuIsa::best_up_to(i) <= i);
        }
        assert_eq!(CpuIsa::parse("AVX2 "), Some(CpuIsa::Avx2));
        assert_eq!(CpuIsa::parse("sse"), None);
        assert_eq!(CpuIsa::best_up_to(CpuIsa::Scalar), CpuIsa::Scalar);
    }

    #[test]
    fn the_kernels_serve_queries_only_and_each_switch_is_scoped_to_its_call() {
        assert!(
            !kernels_enabled(),
            "a page batch never takes the few-row kernels"
        );
        for_queries(|| {
            assert!(kernels_enabled());
            assert!(without_kernels(|| !kernels_enabled()));
            assert!(kernels_enabled());
        });
        assert!(!kernels_enabled());
    }
}
