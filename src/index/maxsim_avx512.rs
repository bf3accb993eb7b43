//! The AVX-512 exact MaxSim kernel, written in inline assembly so that the code that runs is the
//! same in every build profile (our crate builds at opt-level 1 with debug assertions in dev,
//! which puts checks around every intrinsic load).
//!
//! Per page, chunks of `CHUNK_BLOCKS` 16-token blocks (64 tokens) are widened f16 → f32 once into
//! an L1-resident scratch (`k`-major: for each dimension the chunk's 64 values, 4 zmm) by the
//! chunk's first query tile as it multiplies (`tile_widening`; a separate widening pass cost a
//! quarter of the kernel's time), then every other 4-row query tile runs a register-blocked
//! micro-kernel over the scratch: 4 rows × 4 zmm of tokens = 16 accumulators, per dimension 4
//! loads + 4 broadcasts for 16 FMAs, and the max over the chunk's tokens folded into a per-row
//! running max when the tile ends. Every tile step also prefetches one line of the next chunk, so
//! the page streams in evenly while the FMAs run. Token lanes past the page's end are filled with
//! a copy of the chunk's first token (the last, partial chunk is widened by `widen_partial`): a
//! duplicate never changes a max, so the micro-kernel needs no masks. Query rows past `nq` are
//! zero and are left out of the sum.

use super::format::BLOCK_TOKENS;
use super::segment::n_blocks;
use std::arch::asm;

use super::maxsim::{look_ahead, Line, QueryTiles, Scratch, ROWS};

/// 16-token blocks per chunk (4 zmm of tokens per dimension).
pub const CHUNK_BLOCKS: usize = 4;

/// How many chunks ahead the tiles prefetch: the next one.
const PREFETCH_CHUNKS: usize = 1;
const CHUNK_TOKENS: usize = CHUNK_BLOCKS * BLOCK_TOKENS;

/// MaxSim of the prepared query against one packed page.
///
/// # Safety
/// The CPU must have AVX-512F, and `packed` must hold `n_blocks(n_tokens) × dim × 16` values.
///
/// `next` is the page this thread scores after this one, if known: the look-ahead prefetch runs
/// on into it instead of past this page's end (`maxsim::look_ahead`), so the next page's first
/// chunks are not fetched cold.
#[target_feature(enable = "avx512f")]
pub unsafe fn maxsim(
    qt: &QueryTiles,
    s: &mut Scratch,
    packed: &[u16],
    n_tokens: usize,
    next: Option<&[u16]>,
) -> f32 {
    let dim = qt.dim;
    let nb = n_blocks(n_tokens);
    debug_assert!(packed.len() >= nb * dim * BLOCK_TOKENS);
    if n_tokens == 0 || qt.nq == 0 || dim == 0 {
        return 0.0;
    }
    s.chunk.resize(dim * CHUNK_BLOCKS, Line([0.0; 16]));
    s.runmax.clear();
    s.runmax
        .resize(qt.tiles * ROWS, Line([f32::NEG_INFINITY; 16]));
    let block_stride = dim * BLOCK_TOKENS * 2; // bytes between blocks
    let chunk_bytes = CHUNK_BLOCKS * block_stride;
    let ahead = PREFETCH_CHUNKS * chunk_bytes;
    // The chunk `ahead` is prefetched a little at every step of every tile, so that the requests
    // go out evenly while the FMAs run (a burst of 256 prefetches at once stalls the core).
    let pf_step = chunk_bytes.div_ceil(qt.tiles * dim);
    let tile_pf = dim * pf_step;
    let page_bytes = nb * block_stride;
    let mut c = 0;
    while c < nb {
        let src = packed.as_ptr().add(c * dim * BLOCK_TOKENS) as *const u8;
        let dst = s.chunk.as_mut_ptr() as *mut u8;
        let pf = look_ahead(
            packed.as_ptr() as *const u8,
            page_bytes,
            next,
            c * block_stride + ahead,
        );
        let tokens_left = n_tokens - c * BLOCK_TOKENS;
        let mut first = 0;
        if tokens_left >= CHUNK_TOKENS {
            // The first tile widens the chunk as it goes, the others read the widened copy.
            tile_widening(
                qt.data().as_ptr(),
                src,
                block_stride,
                dst,
                dim,
                s.runmax.as_mut_ptr() as *mut u8,
                pf,
                pf_step,
            );
            first = 1;
        } else {
            let mut masks = [0u16; CHUNK_BLOCKS];
            for (j, m) in masks.iter_mut().enumerate() {
                let valid = tokens_left
                    .saturating_sub(j * BLOCK_TOKENS)
                    .min(BLOCK_TOKENS);
                *m = ((1u32 << valid) - 1) as u16;
            }
            widen_partial(src, block_stride, dst, dim, &masks);
        }
        for t in first..qt.tiles {
            tile(
                qt.data().as_ptr().add(t * dim * ROWS),
                s.chunk.as_ptr() as *const u8,
                dim,
                s.runmax.as_mut_ptr().add(t * ROWS) as *mut u8,
                pf.wrapping_add(t * tile_pf),
                pf_step,
            );
        }
        c += CHUNK_BLOCKS;
    }
    s.runmax[..qt.nq]
        .iter()
        .map(|l| l.0.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .sum()
}

/// Widens the page's last, partial chunk: lanes outside `masks` (padding tokens, blocks past the
/// page) get the chunk's first token instead. Masked-off lanes are never read, so blocks past
/// the page's data are not touched.
///
/// # Safety
/// The CPU must have AVX-512F and `dim ≥ 1`. `src` must point at the chunk's first block, its
/// blocks `stride` bytes apart, with `dim × 32` readable bytes in the first block and in every
/// block whose mask is not zero (masked-off lanes are not loaded and cannot fault); `masks[0]`
/// must not be zero. `dst` must be 64-byte aligned with `dim × 256` writable bytes.
#[target_feature(enable = "avx512f")]
unsafe fn widen_partial(
    src: *const u8,
    stride: usize,
    dst: *mut u8,
    dim: usize,
    masks: &[u16; CHUNK_BLOCKS],
) {
    asm!(
        "kmovw k1, word ptr [{m}]",
        "kmovw k2, word ptr [{m} + 2]",
        "kmovw k3, word ptr [{m} + 4]",
        "kmovw k4, word ptr [{m} + 6]",
        "2:",
        "vcvtph2ps zmm0, ymmword ptr [{s}]", // lane 0 of the first block is always a token
        "vbroadcastss zmm4, xmm0",
        "vmovaps zmm1, zmm4",
        "vmovaps zmm2, zmm4",
        "vmovaps zmm3, zmm4",
        "vblendmps zmm0 {{k1}}, zmm4, zmm0",
        "vcvtph2ps zmm1 {{k2}}, ymmword ptr [{s} + {st}]",
        "vcvtph2ps zmm2 {{k3}}, ymmword ptr [{s} + 2*{st}]",
        "vcvtph2ps zmm3 {{k4}}, ymmword ptr [{s3}]",
        "vmovaps zmmword ptr [{d}], zmm0",
        "vmovaps zmmword ptr [{d} + 64], zmm1",
        "vmovaps zmmword ptr [{d} + 128], zmm2",
        "vmovaps zmmword ptr [{d} + 192], zmm3",
        "add {s}, 32",
        "add {s3}, 32",
        "add {d}, 256",
        "dec {k}",
        "jnz 2b",
        m = in(reg) masks.as_ptr(),
        s = inout(reg) src => _,
        s3 = inout(reg) src.wrapping_add(3 * stride) => _,
        st = in(reg) stride,
        d = inout(reg) dst => _,
        k = inout(reg) dim => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _,
        out("k1") _, out("k2") _, out("k3") _, out("k4") _,
        options(nostack),
    );
}

/// One 4-row query tile against the widened chunk; folds the chunk's max into `runmax`
/// (4 lines). Accumulator of row r, token vector j is zmm(4r + j).
macro_rules! fma_row {
    ($b:literal, $off:literal, $r0:literal, $r1:literal, $r2:literal, $r3:literal) => {
        concat!(
            "vbroadcastss zmm",
            $b,
            ", dword ptr [{q} + ",
            $off,
            "]\n",
            "vfmadd231ps zmm",
            $r0,
            ", zmm",
            $b,
            ", zmm16\n",
            "vfmadd231ps zmm",
            $r1,
            ", zmm",
            $b,
            ", zmm17\n",
            "vfmadd231ps zmm",
            $r2,
            ", zmm",
            $b,
            ", zmm18\n",
            "vfmadd231ps zmm",
            $r3,
            ", zmm",
            $b,
            ", zmm19\n",
        )
    };
}

macro_rules! fold_row {
    ($off:literal, $r0:literal, $r1:literal, $r2:literal, $r3:literal) => {
        concat!(
            "vmaxps zmm",
            $r0,
            ", zmm",
            $r0,
            ", zmm",
            $r1,
            "\n",
            "vmaxps zmm",
            $r2,
            ", zmm",
            $r2,
            ", zmm",
            $r3,
            "\n",
            "vmaxps zmm",
            $r0,
            ", zmm",
            $r0,
            ", zmm",
            $r2,
            "\n",
            "vmaxps zmm",
            $r0,
            ", zmm",
            $r0,
            ", zmmword ptr [{m} + ",
            $off,
            "]\n",
            "vmovaps zmmword ptr [{m} + ",
            $off,
            "], zmm",
            $r0,
            "\n",
        )
    };
}

/// `asm!` for the register-blocked kernel loops (here and `maxsim_rows`): the template and
/// operands given, then every register those loops may use — zmm0–29 and k1 — as clobbered, one
/// list for all of them. The operands must end with a comma.
macro_rules! asm_kernel {
    ($($body:tt)*) => {
        std::arch::asm!(
            $($body)*
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
        )
    };
}
pub(super) use asm_kernel;

/// Zeroes the 16 accumulators (4 rows × 4 token vectors) of a tile.
macro_rules! zero_accumulators {
    () => {
        concat!(
            "vpxord zmm0, zmm0, zmm0\n",
            "vpxord zmm1, zmm1, zmm1\n",
            "vpxord zmm2, zmm2, zmm2\n",
            "vpxord zmm3, zmm3, zmm3\n",
            "vpxord zmm4, zmm4, zmm4\n",
            "vpxord zmm5, zmm5, zmm5\n",
            "vpxord zmm6, zmm6, zmm6\n",
            "vpxord zmm7, zmm7, zmm7\n",
            "vpxord zmm8, zmm8, zmm8\n",
            "vpxord zmm9, zmm9, zmm9\n",
            "vpxord zmm10, zmm10, zmm10\n",
            "vpxord zmm11, zmm11, zmm11\n",
            "vpxord zmm12, zmm12, zmm12\n",
            "vpxord zmm13, zmm13, zmm13\n",
            "vpxord zmm14, zmm14, zmm14\n",
            "vpxord zmm15, zmm15, zmm15\n",
        )
    };
}

/// One dimension's 16 FMAs: the 4 query rows (broadcast into zmm20–23) times the 4 token
/// vectors in zmm16–19.
macro_rules! fma_tile {
    () => {
        concat!(
            fma_row!("20", "0", "0", "1", "2", "3"),
            fma_row!("21", "4", "4", "5", "6", "7"),
            fma_row!("22", "8", "8", "9", "10", "11"),
            fma_row!("23", "12", "12", "13", "14", "15"),
        )
    };
}

/// Folds the tile's 4 rows into their running maxima at `{m}`.
macro_rules! fold_tile {
    () => {
        concat!(
            fold_row!("0", "0", "1", "2", "3"),
            fold_row!("64", "4", "5", "6", "7"),
            fold_row!("128", "8", "9", "10", "11"),
            fold_row!("192", "12", "13", "14", "15"),
        )
    };
}

/// One 4-row query tile against the widened chunk (see `fma_row`); prefetches `pf`, advancing
/// `pf_step` bytes per dimension.
///
/// # Safety
/// The CPU must have AVX-512F and `dim ≥ 1`. `q` must point at the tile's `dim × 4` f32s
/// (`QueryTiles` layout), `chunk` at a 64-byte aligned widened chunk of `dim × 256` bytes, and
/// `runmax` at 4 writable 64-byte aligned `Line`s. `pf` may be any address: it is only prefetched.
#[target_feature(enable = "avx512f")]
unsafe fn tile(
    q: *const f32,
    chunk: *const u8,
    dim: usize,
    runmax: *mut u8,
    pf: *const u8,
    pf_step: usize,
) {
    asm_kernel!(
        zero_accumulators!(),
        "2:",
        "vmovaps zmm16, zmmword ptr [{c}]",
        "vmovaps zmm17, zmmword ptr [{c} + 64]",
        "vmovaps zmm18, zmmword ptr [{c} + 128]",
        "vmovaps zmm19, zmmword ptr [{c} + 192]",
        "prefetcht1 byte ptr [{pf}]",
        "add {pf}, {ps}",
        fma_tile!(),
        "add {c}, 256",
        "add {q}, 16",
        "dec {k}",
        "jnz 2b",
        fold_tile!(),
        q = inout(reg) q => _,
        c = inout(reg) chunk => _,
        k = inout(reg) dim => _,
        m = in(reg) runmax,
        pf = inout(reg) pf => _,
        ps = in(reg) pf_step,
    );
}

/// The chunk's first 4-row query tile, straight from the stored f16 blocks: each dimension's 4 × 16
/// token values are widened (f16 → f32), stored into `chunk` for the other tiles and multiplied
/// at once, so the widening costs no pass of its own. Folds the chunk's max into `runmax` as
/// `tile` does; prefetches one line of the chunk ahead per step (`pf`, `pf_step`).
///
/// # Safety
/// As `tile`, and: `src` must point at a whole chunk of 4 blocks `stride` bytes apart, each with
/// `dim × 32` readable bytes, and `chunk` must be writable (`dim × 256` bytes).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_widening(
    q: *const f32,
    src: *const u8,
    stride: usize,
    chunk: *mut u8,
    dim: usize,
    runmax: *mut u8,
    pf: *const u8,
    pf_step: usize,
) {
    asm_kernel!(
        zero_accumulators!(),
        "2:",
        "vcvtph2ps zmm16, ymmword ptr [{s}]",
        "vcvtph2ps zmm17, ymmword ptr [{s} + {st}]",
        "vcvtph2ps zmm18, ymmword ptr [{s} + 2*{st}]",
        "vcvtph2ps zmm19, ymmword ptr [{s3}]",
        "vmovaps zmmword ptr [{c}], zmm16",
        "vmovaps zmmword ptr [{c} + 64], zmm17",
        "vmovaps zmmword ptr [{c} + 128], zmm18",
        "vmovaps zmmword ptr [{c} + 192], zmm19",
        "prefetcht1 byte ptr [{pf}]",
        "add {pf}, {ps}",
        fma_tile!(),
        "add {s}, 32",
        "add {s3}, 32",
        "add {c}, 256",
        "add {q}, 16",
        "dec {k}",
        "jnz 2b",
        fold_tile!(),
        q = inout(reg) q => _,
        s = inout(reg) src => _,
        s3 = inout(reg) src.wrapping_add(3 * stride) => _,
        st = in(reg) stride,
        c = inout(reg) chunk => _,
        k = inout(reg) dim => _,
        m = in(reg) runmax,
        pf = inout(reg) pf => _,
        ps = in(reg) pf_step,
    );
}

/// A register-only loop of `iters` × 12 independent 512-bit FMAs on this core; returns the flop
/// it did (16 lanes × 2 flop per FMA), for the caller to time. The multiplicands are set to 1.0
/// and 1e-3 first: left as whatever earlier code put in those registers (integers, say), they
/// were now and then subnormal floats, and every FMA on a subnormal takes a microcode assist —
/// such runs reached a small fraction of the peak, and any window they fell into came out low.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn fma_loop(iters: u64) -> f64 {
    asm!(
        "vpxord zmm0, zmm0, zmm0",
        "vpxord zmm1, zmm1, zmm1",
        "vpxord zmm2, zmm2, zmm2",
        "vpxord zmm3, zmm3, zmm3",
        "vpxord zmm4, zmm4, zmm4",
        "vpxord zmm5, zmm5, zmm5",
        "vpxord zmm6, zmm6, zmm6",
        "vpxord zmm7, zmm7, zmm7",
        "vpxord zmm8, zmm8, zmm8",
        "vpxord zmm9, zmm9, zmm9",
        "vpxord zmm10, zmm10, zmm10",
        "vpxord zmm11, zmm11, zmm11",
        "mov {t:e}, 0x3f800000", // 1.0
        "vpbroadcastd zmm12, {t:e}",
        "mov {t:e}, 0x3a83126f", // 1e-3: the sums stay normal floats (≤ ~1e3 per 1e6 steps)
        "vpbroadcastd zmm13, {t:e}",
        "2:",
        "vfmadd231ps zmm0, zmm12, zmm13",
        "vfmadd231ps zmm1, zmm12, zmm13",
        "vfmadd231ps zmm2, zmm12, zmm13",
        "vfmadd231ps zmm3, zmm12, zmm13",
        "vfmadd231ps zmm4, zmm12, zmm13",
        "vfmadd231ps zmm5, zmm12, zmm13",
        "vfmadd231ps zmm6, zmm12, zmm13",
        "vfmadd231ps zmm7, zmm12, zmm13",
        "vfmadd231ps zmm8, zmm12, zmm13",
        "vfmadd231ps zmm9, zmm12, zmm13",
        "vfmadd231ps zmm10, zmm12, zmm13",
        "vfmadd231ps zmm11, zmm12, zmm13",
        "dec {n}",
        "jnz 2b",
        n = inout(reg) iters.max(1) => _,
        t = out(reg) _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
        out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
        out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
        out("zmm12") _, out("zmm13") _,
        options(nostack, nomem),
    );
    iters.max(1) as f64 * 12.0 * 32.0
}

/// The same loop with 10 independent 256-bit FMAs (the AVX2 path's peak); returns its flop.
/// Its multiplicands are set first for the same reason.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn fma_loop_avx2(iters: u64) -> f64 {
    asm!(
        "vxorps ymm0, ymm0, ymm0",
        "vxorps ymm1, ymm1, ymm1",
        "vxorps ymm2, ymm2, ymm2",
        "vxorps ymm3, ymm3, ymm3",
        "vxorps ymm4, ymm4, ymm4",
        "vxorps ymm5, ymm5, ymm5",
        "vxorps ymm6, ymm6, ymm6",
        "vxorps ymm7, ymm7, ymm7",
        "vxorps ymm8, ymm8, ymm8",
        "vxorps ymm9, ymm9, ymm9",
        "mov {t:e}, 0x3f800000",
        "vmovd xmm10, {t:e}",
        "vbroadcastss ymm10, xmm10",
        "mov {t:e}, 0x3a83126f",
        "vmovd xmm11, {t:e}",
        "vbroadcastss ymm11, xmm11",
        "2:",
        "vfmadd231ps ymm0, ymm10, ymm11",
        "vfmadd231ps ymm1, ymm10, ymm11",
        "vfmadd231ps ymm2, ymm10, ymm11",
        "vfmadd231ps ymm3, ymm10, ymm11",
        "vfmadd231ps ymm4, ymm10, ymm11",
        "vfmadd231ps ymm5, ymm10, ymm11",
        "vfmadd231ps ymm6, ymm10, ymm11",
        "vfmadd231ps ymm7, ymm10, ymm11",
        "vfmadd231ps ymm8, ymm10, ymm11",
        "vfmadd231ps ymm9, ymm10, ymm11",
        "dec {n}",
        "jnz 2b",
        n = inout(reg) iters.max(1) => _,
        t = out(reg) _,
        out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
        out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
        out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
        options(nostack, nomem),
    );
    iters.max(1) as f64 * 10.0 * 16.0
}
