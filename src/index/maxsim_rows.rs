//! The AVX-512 exact MaxSim kernel for queries of `MIN_ROWS`..: every query row at once against
//! one 16-token block, the page read front to back in one pass.
//!
//! The tile kernel (`maxsim_avx512`) widens a 64-token chunk into L1 and runs 4-row query tiles
//! over it: its reads of main memory come in a burst per chunk (the first tile), four 4 KiB blocks
//! side by side, and the look-ahead has to be prefetched in software, each prefetch holding one of
//! the core's few line-fill buffers until its line arrives. Here each dimension step converts one
//! block's 16 values (f16 → f32, `vcvtph2ps`) and does one FMA per query row with that row's value
//! broadcast from memory (`{1to16}`): up to 28 accumulators, one per row, each holding 16 token
//! lanes. The page is read sequentially at 32 bytes per step — the access pattern the L2 hardware
//! streamer follows on its own, as it does for a plain sum — and the conversion costs one uop per
//! 12–28 FMAs instead of one per 4. After a block, each row's 16 lanes are folded into its running
//! max with the block's valid-token mask, so padding tokens never win a max. Queries longer than
//! `MAX_ROWS` run in groups of rows, each a pass over the page (the second from cache).

use super::format::BLOCK_TOKENS;
use super::maxsim::{Line, Scratch};
use super::segment::n_blocks;
use std::arch::asm;

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

/// Bytes ahead of the block being read that each step also prefetches (`PAGESIGHT_MAXSIM_ROWS_PREFETCH`,
/// default 0 = none beyond the hardware's; read once). A knob for measuring.
fn prefetch_bytes() -> usize {
    static AHEAD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *AHEAD.get_or_init(|| {
        std::env::var("PAGESIGHT_MAXSIM_ROWS_PREFETCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n <= 1 << 16)
            .unwrap_or(0)
    })
}

/// MaxSim of the prepared query against one packed page.
///
/// # Safety
/// The CPU must have AVX-512F, and `packed` must hold `n_blocks(n_tokens) × dim × 16` values.
#[target_feature(enable = "avx512f")]
pub unsafe fn maxsim(qr: &QueryRows, s: &mut Scratch, packed: &[u16], n_tokens: usize) -> f32 {
    let dim = qr.dim;
    let nb = n_blocks(n_tokens);
    debug_assert!(packed.len() >= nb * dim * BLOCK_TOKENS);
    if n_tokens == 0 || dim == 0 {
        return 0.0;
    }
    let block_bytes = dim * BLOCK_TOKENS * 2;
    let ahead = prefetch_bytes();
    let mut total = 0.0;
    for g in &qr.groups {
        s.runmax.clear();
        s.runmax.resize(g.padded, Line([f32::NEG_INFINITY; 16]));
        let runmax = s.runmax.as_mut_ptr() as *mut u8;
        for b in 0..nb {
            let valid = (n_tokens - b * BLOCK_TOKENS).min(BLOCK_TOKENS);
            let mask = ((1u32 << valid) - 1) as u16;
            let src = (packed.as_ptr() as *const u8).add(b * block_bytes);
            let args = (g.data.as_ptr(), g.padded * 4, src, dim, runmax, mask, ahead);
            match g.padded {
                12 => rows12(args),
                16 => rows16(args),
                20 => rows20(args),
                24 => rows24(args),
                _ => rows28(args),
            }
        }
        total += s.runmax[..g.rows]
            .iter()
            .map(|l| l.0.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .sum::<f32>();
    }
    total
}

/// (query rows, bytes between dimensions in them, block, dim, running maxima, valid-token mask,
/// prefetch distance in bytes).
type BlockArgs = (*const f32, usize, *const u8, usize, *mut u8, u16, usize);

/// One block against `$n` query rows: accumulators zmm0..zmm{n-1}, the block's values for one
/// dimension in zmm28, zmm29 to fold.
macro_rules! rows_kernel {
    ($name:ident, $n:literal, [$($r:literal),*]) => {
        #[target_feature(enable = "avx512f")]
        unsafe fn $name((q, q_stride, src, dim, runmax, mask, ahead): BlockArgs) {
            asm!(
                "kmovw k1, {mask:e}",
                $(concat!("vpxord zmm", $r, ", zmm", $r, ", zmm", $r),)*
                "2:",
                "prefetcht1 byte ptr [{s} + {pd}]",
                "vcvtph2ps zmm28, ymmword ptr [{s}]",
                $(concat!("vfmadd231ps zmm", $r, ", zmm28, dword ptr [{q} + 4*", $r, "]{{1to16}}"),)*
                "add {s}, 32",
                "add {q}, {qs}",
                "dec {k}",
                "jnz 2b",
                $(
                    concat!("vmovaps zmm29, zmmword ptr [{m} + 64*", $r, "]"),
                    concat!("vmaxps zmm29 {{k1}}, zmm29, zmm", $r),
                    concat!("vmovaps zmmword ptr [{m} + 64*", $r, "], zmm29"),
                )*
                mask = in(reg) mask as u32,
                q = inout(reg) q => _,
                qs = in(reg) q_stride,
                s = inout(reg) src => _,
                k = inout(reg) dim => _,
                m = in(reg) runmax,
                pd = in(reg) ahead,
                out("k1") _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
                out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
                out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
                out("zmm28") _, out("zmm29") _,
                options(nostack),
            );
        }
    };
}

rows_kernel!(rows12, 12, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
rows_kernel!(
    rows16,
    16,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
);
rows_kernel!(
    rows20,
    20,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
);
rows_kernel!(
    rows24,
    24,
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]
);
rows_kernel!(
    rows28,
    28,
    [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27
    ]
);
