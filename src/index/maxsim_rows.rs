//! The AVX-512 exact MaxSim kernel for queries of `MIN_ROWS`+ tokens (ColQwen queries, with their
//! prompt and padding, are ~15–30): every query row at once against one 16-token block, each block
//! read from both ends.
//!
//! The tile kernel (`maxsim_avx512`) widens a 64-token chunk into L1 and runs 4-row query tiles
//! over it: it reads main memory through software prefetches of every line of the next chunk, and
//! each prefetch holds one of the core's few line-fill buffers until its line arrives — with 16
//! cores loading the memory system that caps the lines a core keeps in flight. Here each dimension
//! step converts one block's 16 values (f16 → f32, `vcvtph2ps`) and does one FMA per query row with
//! that row's value broadcast from memory (`{1to16}`): up to 28 accumulators, one per row, each
//! holding 16 token lanes; the conversion costs one uop per 12–28 FMAs. A block (4 KiB at 128
//! dimensions) is read from its front and its back at once, a dimension from each per step: the L2
//! hardware streamer keeps one forward and one backward stream per 4 KiB page and its requests
//! need no fill buffer, so two streams each consumed at half the rate give it twice the time to
//! run ahead. It stops at every 4 KiB boundary and needs misses to start again, so each block
//! prefetches the first and last two lines of the block `TRIGGER_BYTES` ahead, and each front and
//! back step the line it will read one block later (`PREFETCH_BYTES`), into L1 (`prefetcht0`: one
//! fill per line where an L2 prefetch and then the load's L1 miss take two). The measurements
//! behind these choices are in `bench/gpu-notes.md`. After a block, each row's 16 lanes are
//! folded into its running max under the block's valid-token mask, so padding tokens never win a
//! max. Queries longer than `MAX_ROWS` run in groups of rows, each a pass over the page (the
//! second from cache).

use super::format::BLOCK_TOKENS;
use super::maxsim::{look_ahead, Line, Scratch};
use super::maxsim_avx512::asm_kernel;
use super::segment::n_blocks;

/// Most query rows one pass holds (28 accumulators, the token vector, one register to fold).
pub const MAX_ROWS: usize = 28;
/// Fewest query rows this kernel is used for: with fewer accumulators the FMAs' latency, not
/// their throughput, would set the pace.
pub const MIN_ROWS: usize = 9;

/// Up to `MAX_ROWS` query rows laid out for the kernel: for each dimension the rows' values side
/// by side (`padded` of them, a multiple of 4; rows past the query are zero and left out of the sum).
struct RowGroup {
    rows: usize,
    padded: usize,
    data: Vec<f32>,
}

/// A query prepared for this kernel (`q` is `nq × dim` row-major f32, `nq ≥ MIN_ROWS`).
pub struct QueryRows {
    dim: usize,
    groups: Vec<RowGroup>,
}

impl QueryRows {
    pub fn new(q: &[f32], nq: usize, dim: usize) -> Self {
        assert!(
            nq >= MIN_ROWS,
            "the row kernel needs at least {MIN_ROWS} query rows"
        );
        let n_groups = nq.div_ceil(MAX_ROWS);
        let per_group = nq.div_ceil(n_groups);
        let groups = (0..nq)
            .step_by(per_group)
            .map(|first| {
                let rows = per_group.min(nq - first);
                let padded = rows.div_ceil(4).max(3) * 4;
                let mut data = vec![0f32; dim * padded];
                for r in 0..rows {
                    for k in 0..dim {
                        data[k * padded + r] = q[(first + r) * dim + k];
                    }
                }
                RowGroup { rows, padded, data }
            })
            .collect();
        QueryRows { dim, groups }
    }
}

/// How far ahead of the data being read each step prefetches, in bytes: one block of 128
/// dimensions, so each front and back step prefetches the line it will read in the next block.
const PREFETCH_BYTES: usize = 4096;

/// How far ahead of the block being read, in bytes, the block whose first and last two lines each
/// block prefetches as it starts.
const TRIGGER_BYTES: usize = 8192;

/// Byte offsets, within a block of `block_bytes`, of the lines each block prefetches in the block
/// `trigger_bytes` ahead to start the streamer's forward and backward streams there: its first two
/// lines and its last two (the streamer needs two misses to see a direction). More pairs spread
/// over the block were slower (`bench/gpu-notes.md`).
fn trigger_offsets(block_bytes: usize) -> [usize; 4] {
    [
        0,
        64,
        block_bytes.saturating_sub(64),
        block_bytes.saturating_sub(128),
    ]
}

/// Prefetches the line at `at` into L2.
#[inline]
fn prefetch_l2(at: usize) {
    // SAFETY: `_mm_prefetch` needs only SSE, part of every x86_64 CPU, and a prefetch is a hint
    // that reads nothing the program sees and never faults, whatever the address.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        _mm_prefetch::<_MM_HINT_T1>(at as *const i8)
    }
}

/// MaxSim of the prepared query against one packed page; `next` is the page this thread scores
/// after it, if known: look-ahead past this page's end goes there instead of into its sign codes.
///
/// # Safety
/// The CPU must have AVX-512F, and `packed` must hold `n_blocks(n_tokens) × dim × 16` values.
#[target_feature(enable = "avx512f")]
pub unsafe fn maxsim(
    qr: &QueryRows,
    s: &mut Scratch,
    packed: &[u16],
    n_tokens: usize,
    next: Option<&[u16]>,
) -> f32 {
    let dim = qr.dim;
    let nb = n_blocks(n_tokens);
    debug_assert!(packed.len() >= nb * dim * BLOCK_TOKENS);
    if n_tokens == 0 || dim == 0 {
        return 0.0;
    }
    let block_bytes = dim * BLOCK_TOKENS * 2;
    let page_bytes = nb * block_bytes;
    let base = packed.as_ptr() as *const u8;
    let ahead_at = |offset: usize| look_ahead(base, page_bytes, next, offset) as usize;
    let (ahead, trigger) = (PREFETCH_BYTES, TRIGGER_BYTES);
    let triggers = trigger_offsets(block_bytes);
    let mut total = 0.0;
    for g in &qr.groups {
        s.runmax.clear();
        s.runmax.resize(g.padded, Line([f32::NEG_INFINITY; 16]));
        let runmax = s.runmax.as_mut_ptr() as *mut u8;
        for b in 0..nb {
            let valid = (n_tokens - b * BLOCK_TOKENS).min(BLOCK_TOKENS);
            let at = b * block_bytes;
            let block = BlockArgs {
                q: g.data.as_ptr(),
                q_stride: g.padded * 4,
                src: base.add(at),
                dim,
                runmax,
                mask: ((1u32 << valid) - 1) as u16,
                // Per step the prefetch is `src + offset` (front and back), wherever the
                // look-ahead points.
                pf_offset: ahead_at(at + ahead).wrapping_sub(base.add(at) as usize),
            };
            for &line in &triggers {
                prefetch_l2(ahead_at(at + trigger + line));
            }
            match g.padded {
                12 => rows12(block),
                16 => rows16(block),
                20 => rows20(block),
                24 => rows24(block),
                _ => rows28(block),
            }
        }
        total += s.runmax[..g.rows]
            .iter()
            .map(|l| l.0.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .sum::<f32>();
    }
    total
}

/// One block's call: the query group (`q`, `q_stride` bytes between dimensions), the block, the
/// rows' running maxima, the block's valid-token mask, and where its prefetches go.
struct BlockArgs {
    q: *const f32,
    q_stride: usize,
    src: *const u8,
    dim: usize,
    runmax: *mut u8,
    mask: u16,
    pf_offset: usize,
}

/// One block against `$n` query rows: accumulators zmm0..zmm{n-1}; per step dimension `k` from
/// the front (values in zmm28) and `dim − 1 − k` from the back (zmm29), each prefetching
/// `pf_offset` ahead of itself; an odd middle dimension last, from the front; zmm29 then folds.
macro_rules! rows_kernel {
    ($name:ident, $hint:literal, $n:literal, [$($r:literal),*]) => {
        /// One block against the query group's rows (as many as the name's number).
        ///
        /// # Safety
        /// The CPU must have AVX-512F and `a.dim ≥ 1`. `a.src` must point at the block's
        /// `dim × 32` readable bytes, `a.q` at `dim` rows of the group's values `a.q_stride`
        /// bytes apart with at least this many f32s each, and `a.runmax` at this many writable
        /// 64-byte aligned `Line`s. The prefetch addresses may be anything.
        #[target_feature(enable = "avx512f")]
        unsafe fn $name(a: BlockArgs) {
            let q_back = a.q.byte_add((a.dim - 1) * a.q_stride);
            let s_back = a.src.add((a.dim - 1) * 32);
            asm_kernel!(
                "kmovw k1, {mask:e}",
                $(concat!("vpxord zmm", $r, ", zmm", $r, ", zmm", $r),)*
                "test {k}, {k}",
                "jz 3f",
                "2:",
                concat!("prefetch", $hint, " byte ptr [{s} + {pd}]"),
                concat!("prefetch", $hint, " byte ptr [{e} + {pd}]"),
                "vcvtph2ps zmm28, ymmword ptr [{s}]",
                $(concat!("vfmadd231ps zmm", $r, ", zmm28, dword ptr [{q} + 4*", $r, "]{{1to16}}"),)*
                "vcvtph2ps zmm29, ymmword ptr [{e}]",
                $(concat!("vfmadd231ps zmm", $r, ", zmm29, dword ptr [{qe} + 4*", $r, "]{{1to16}}"),)*
                "add {s}, 32",
                "sub {e}, 32",
                "add {q}, {qs}",
                "sub {qe}, {qs}",
                "dec {k}",
                "jnz 2b",
                "3:",
                "test {odd}, {odd}",
                "jz 4f",
                "vcvtph2ps zmm28, ymmword ptr [{s}]",
                $(concat!("vfmadd231ps zmm", $r, ", zmm28, dword ptr [{q} + 4*", $r, "]{{1to16}}"),)*
                "4:",
                $(
                    concat!("vmovaps zmm29, zmmword ptr [{m} + 64*", $r, "]"),
                    concat!("vmaxps zmm29 {{k1}}, zmm29, zmm", $r),
                    concat!("vmovaps zmmword ptr [{m} + 64*", $r, "], zmm29"),
                )*
                mask = in(reg) a.mask as u32,
                q = inout(reg) a.q => _,
                qe = inout(reg) q_back => _,
                qs = in(reg) a.q_stride,
                s = inout(reg) a.src => _,
                e = inout(reg) s_back => _,
                k = inout(reg) a.dim / 2 => _,
                odd = in(reg) a.dim % 2,
                m = in(reg) a.runmax,
                pd = in(reg) a.pf_offset,
            );
        }
    };
}

rows_kernel!(rows12, "t0", 12, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
rows_kernel!(
    rows16,
    "t0",
    16,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
);
rows_kernel!(
    rows20,
    "t0",
    20,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
);
rows_kernel!(
    rows24,
    "t0",
    24,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]
);
rows_kernel!(
    rows28,
    "t0",
    28,
    [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27
    ]
);
