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
//! Shape of the computation: the output columns are split into blocks, handed to the cores by
//! candle's spinning pool (see [`crate::parallel`]); each block walks `in`
//! in chunks of [`KC`] words (f32 values, or twice as many bf16) so the chunk of every query row
//! stays in L1, and inside a chunk runs tiles of up to `RMAX` rows × one output column: each
//! weight vector is decoded once and multiplied into `RMAX` row accumulators held in registers
//! (FMA, f32 accumulate), the weights of the next-but-one column prefetched (a column's chunk is a
//! few cache lines a weight row away from the last, which the hardware prefetchers do not
//! follow), the rows copied to a stride that puts them in different L1 sets. The weight decode
//! and the kernel are written once ([`Simd`] primitives, [`Stream`] weight formats, one generic
//! tile), and compiled per instruction set: AVX-512 BF16, AVX-512F, AVX2+FMA+F16C, NEON on AArch64,
//! and a portable one the compiler vectorises as it can. The set is picked at run time and may be
//! capped with `PAGESIGHT_CPU_ISA=avx512bf16|avx512|avx2|neon|scalar` ([`crate::env_vars::CPU_ISA`]).
//!
//! The AVX-512 BF16 set (the default where the CPU has it: Zen 4 and later, Intel from Cooper
//! Lake / Sapphire Rapids) trades exactness for twice the arithmetic per instruction, since the
//! f32 sets already run near the FMA units' peak and the FMAs are what is left: `vdpbf16ps` does
//! two multiply-adds per f32 lane where `vfmadd231ps` does one. Its operands are bf16: the input
//! rows rounded (nearest even) once when packed, the weights rounded as decoded (stored bf16 as
//! is; f16 rounded; NF4's code × absmax computed in f32, then rounded). Each product of two bf16
//! is exact in f32 and the sums stay f32, so a result is the exact product of the rounded
//! operands to f32's accuracy, and within bf16's rounding (~2⁻⁸ of the products' magnitudes, far
//! less on a sum of many) of the f32 product; the inputs past the last whole vector (the scalar
//! tail) stay f32. f32 weights keep f32 products (`CpuIsa::for_weight` says why; the kernel
//! rounds them only where the tests ask it to). A vector there is 32 values in 16 words: the
//! packed rows, the running sums and a decoded chunk are strided by `Simd::WORDS`, the values a
//! step covers by `Simd::LANES`. Only queries take these kernels, and a query vector may move by
//! 1e-2 (relative) from the f32 one as long as a search's top 10 stays the same (issue #22); the
//! model's test holds the set to that, and `PAGESIGHT_CPU_ISA=avx512` (or [`with_isa`] around a
//! part of the forward) keeps f32 products. Figures and accuracy: `docs/benchmarks.md` ("Query
//! embedding on the CPU"); per-layer timing: `examples/cpu_gemm.rs`.

use half::{bf16, f16};
use std::sync::OnceLock;

use super::nf4::AbsmaxState;

#[macro_use]
mod simd;
mod job;
#[cfg(target_arch = "aarch64")]
mod neon;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::parallel::threads;
use crate::parallel::SharedOut;
use job::{column_block, for_each_task, packed_rows, Job, Scratch, Sums, MAX_WORDS};

/// Input words per row per chunk (a word: one f32, or two bf16 on a bf16-product set): `RMAX`
/// rows × `KC` × 4 bytes stay in L1 (28 rows: 28 KiB).
const KC: usize = 256;

/// The instruction sets the kernels are compiled for, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuIsa {
    /// Plain Rust (8-wide arrays the compiler vectorises with the target's baseline).
    Scalar,
    /// 128-bit AArch64 NEON (every AArch64 CPU).
    Neon,
    /// 256-bit FMA with F16C.
    Avx2,
    /// 512-bit (AVX-512F).
    Avx512,
    /// 512-bit with bf16 products (AVX-512 BF16 `vdpbf16ps`): inputs and weights rounded to
    /// bf16, sums in f32 — not the f32 product the others compute (see [`Self::bf16_products`]);
    /// f32 weights run on [`Self::Avx512`].
    Avx512Bf16,
}

impl CpuIsa {
    /// Best first.
    pub const ALL: [CpuIsa; 5] = [
        CpuIsa::Avx512Bf16,
        CpuIsa::Avx512,
        CpuIsa::Avx2,
        CpuIsa::Neon,
        CpuIsa::Scalar,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CpuIsa::Scalar => "scalar",
            CpuIsa::Neon => "neon",
            CpuIsa::Avx2 => "avx2",
            CpuIsa::Avx512 => "avx512",
            CpuIsa::Avx512Bf16 => "avx512bf16",
        }
    }

    /// Whether the set multiplies bf16-rounded values (the input rows and the weights rounded to
    /// nearest even, each product exact, the sums in f32) instead of f32 ones: its results are
    /// within bf16's rounding of the exact product, not f32's.
    pub fn bf16_products(self) -> bool {
        self == CpuIsa::Avx512Bf16
    }

    /// The set the product of `w` runs on when this one is asked for: f32 weights keep f32
    /// products on the bf16-product set. A model loaded in f32 was asked for f32's accuracy (the
    /// command line's output is held to the reference's to 1e-4), and an f32 weight's product is
    /// bound more by reading 4 bytes a value than by the arithmetic bf16 products halve; bf16,
    /// f16 and NF4 weights already carry a rounding of bf16's size or more.
    fn for_weight(self, w: Weight) -> CpuIsa {
        match w {
            Weight::F32(_) => self.with_f32_products(),
            _ => self,
        }
    }

    /// The set that computes what this one does in f32 products: the bf16-product set's f32
    /// twin, any other set itself.
    fn with_f32_products(self) -> CpuIsa {
        match self {
            CpuIsa::Avx512Bf16 => CpuIsa::Avx512,
            other => other,
        }
    }

    /// Input values per step of the set's vectors (its kernel's `Simd::LANES`).
    fn lanes(self) -> usize {
        match self {
            CpuIsa::Avx512Bf16 => 32,
            CpuIsa::Avx512 => 16,
            CpuIsa::Scalar | CpuIsa::Avx2 => 8,
            CpuIsa::Neon => 4,
        }
    }

    /// Every set's name, best first, for messages: "avx512bf16, avx512, …".
    pub fn names() -> String {
        CpuIsa::ALL.map(CpuIsa::name).join(", ")
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
            // Part of every AArch64 CPU.
            CpuIsa::Neon => cfg!(target_arch = "aarch64"),
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
            #[cfg(target_arch = "x86_64")]
            CpuIsa::Avx512Bf16 => {
                // The compiler's avx512bf16 implies avx512bw: both asked for.
                std::arch::is_x86_feature_detected!("avx512bf16")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && CpuIsa::Avx512.available()
            }
            #[cfg(not(target_arch = "x86_64"))]
            CpuIsa::Avx2 | CpuIsa::Avx512 | CpuIsa::Avx512Bf16 => false,
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
                    "{}={v:?} is not one of {}: ignored",
                    crate::env_vars::CPU_ISA,
                    CpuIsa::names()
                );
                CpuIsa::Avx512Bf16
            }),
            Err(_) => CpuIsa::Avx512Bf16,
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

/// Runs `f` with this thread's products in f32: the bf16-product set steps down to the best f32
/// set, any other stays. For the layers whose rounding moves a query's vectors most for their
/// share of its time (the attention's projections and the output projection, see
/// `TextModel::forward`).
pub fn exact_products<T>(f: impl FnOnce() -> T) -> T {
    with_isa(isa().with_f32_products(), f)
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

/// This thread's kernel settings ([`with_isa`], [`without_kernels`], [`for_queries`]), to carry
/// a forward onto another thread with them.
#[derive(Clone, Copy, Debug)]
pub struct KernelContext {
    isa: Option<CpuIsa>,
    off: bool,
    queries: bool,
}

impl KernelContext {
    /// The settings of the calling thread.
    pub fn here() -> KernelContext {
        KernelContext {
            isa: ISA_HERE.with(|c| c.get()),
            off: OFF.with(|c| c.get()),
            queries: QUERIES.with(|c| c.get()),
        }
    }

    /// Whether the few-row kernels may serve a query under these settings (not switched off by
    /// [`without_kernels`]).
    pub fn kernels_on(self) -> bool {
        !self.off
    }

    /// Runs `f` with these settings on the calling thread, then puts its own back.
    pub fn apply<T>(self, f: impl FnOnce() -> T) -> T {
        let before = KernelContext::here();
        self.set();
        let out = f();
        before.set();
        out
    }

    fn set(self) {
        ISA_HERE.with(|c| c.set(self.isa));
        OFF.with(|c| c.set(self.off));
        QUERIES.with(|c| c.set(self.queries));
    }
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

/// A second product added into the first's outputs in the same pass: `B · low` for an
/// adapter beside the weight (`B` = scale·B `[out, rank]`, `low` = A·x, `rows × rank`), so its
/// outputs are not written, transposed and added as a product of their own.
#[derive(Clone, Copy)]
pub struct Beside<'a> {
    pub weight: Weight<'a>,
    pub x: &'a [f32],
    pub inp: usize,
}

/// `y = x · Wᵀ` for `x` `rows × in` (row-major f32): `rows × out`, f32, on all cores with the
/// instruction set of [`isa`] (with bf16 products where that is [`CpuIsa::Avx512Bf16`] and `w`
/// is not f32).
pub fn matmul_rows(w: Weight, out: usize, inp: usize, x: &[f32], rows: usize) -> Vec<f32> {
    matmul_rows_isa(isa(), w, out, inp, x, rows)
}

/// [`matmul_rows`] plus `beside`'s product in the same pass.
pub fn matmul_rows_beside(
    w: Weight,
    out: usize,
    inp: usize,
    x: &[f32],
    rows: usize,
    beside: Beside,
) -> Vec<f32> {
    product(isa(), w, out, inp, x, rows, Some(beside))
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
    product(isa, w, out, inp, x, rows, None)
}

fn check_shape(w: Weight, out: usize, inp: usize, x: &[f32], rows: usize) {
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
}

fn product(
    isa: CpuIsa,
    w: Weight,
    out: usize,
    inp: usize,
    x: &[f32],
    rows: usize,
    beside: Option<Beside>,
) -> Vec<f32> {
    let beside_isa = beside.map_or(isa, |b| isa.for_weight(b.weight));
    product_on(
        (isa.for_weight(w), beside_isa),
        w,
        out,
        inp,
        x,
        rows,
        beside,
    )
}

/// [`product`] with `w` on `isa` and `beside` on `beside_isa` as given (tests: the bf16 set's f32
/// weights).
fn product_on(
    (isa, beside_isa): (CpuIsa, CpuIsa),
    w: Weight,
    out: usize,
    inp: usize,
    x: &[f32],
    rows: usize,
    beside: Option<Beside>,
) -> Vec<f32> {
    for i in [isa, beside_isa] {
        assert!(i.available(), "{} is not available on this CPU", i.name());
    }
    check_shape(w, out, inp, x, rows);
    if let Some(b) = beside {
        check_shape(b.weight, out, b.inp, b.x, rows);
    }
    if rows == 0 || out == 0 {
        return vec![0f32; rows * out];
    }
    let cols = column_block(out);
    let (packed, at) = packed_rows(x, rows, inp, isa.lanes(), isa.bf16_products());
    let packed = &packed[at..];
    let beside_packed = beside.map(|b| {
        let (lanes, bf16) = (beside_isa.lanes(), beside_isa.bf16_products());
        packed_rows(b.x, rows, b.inp, lanes, bf16)
    });
    let mut y: Vec<f32> = Vec::with_capacity(rows * out);
    let y_at = SharedOut::new(&mut y);
    for_each_task(out.div_ceil(cols), |scratch: &mut Scratch, b| {
        let Scratch {
            absmax,
            partial,
            out: by_column,
        } = scratch;
        let o0 = b * cols;
        let o1 = (o0 + cols).min(out);
        // [o1 - o0][rows]: the tiles' layout, then written to the rows of `y`.
        by_column.clear();
        by_column.resize((o1 - o0) * rows, 0.0);
        partial.resize(by_column.len() * MAX_WORDS, 0.0);
        let job = Job {
            x,
            packed,
            rows,
            inp,
            o0,
            o1,
        };
        let mut sums = Sums {
            out: by_column,
            partial,
        };
        job.run_weight(isa, w, absmax, &mut sums);
        if let (Some(b), Some((bp, b_at))) = (beside, &beside_packed) {
            // The tiles add each output's sum into `sums.out`: the second product lands on
            // the first.
            let job = Job {
                x: b.x,
                packed: &bp[*b_at..],
                inp: b.inp,
                ..job
            };
            job.run_weight(beside_isa, b.weight, absmax, &mut sums);
        }
        for r in 0..rows {
            // SAFETY: row `r`'s columns `o0..o1` of `y` (capacity rows × out), written by
            // this task only.
            let dst = unsafe { y_at.part(r * out + o0, o1 - o0) };
            for (d, col) in dst.iter_mut().zip(by_column.chunks_exact(rows)) {
                *d = col[r];
            }
        }
    });
    // SAFETY: the tasks cover the columns `0..out` once each, every row: all `rows × out`
    // values are written.
    unsafe { y.set_len(rows * out) };
    y
}
