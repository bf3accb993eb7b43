//! The SIMD primitives each instruction set provides, the macro that instantiates a tile per
//! row count, and the portable set.

use super::job::{Job, Sums};
use super::stream::Stream;
use crate::quant::nf4::NF4_CODE;
use half::f16;

/// SIMD primitives one instruction set provides; everything else is generic over them.
///
/// A vector `V` is `WORDS` 32-bit words. On the f32 sets an operand vector holds `LANES` =
/// `WORDS` f32 values; on a bf16-product set it holds `LANES` = 2 × `WORDS` bf16 values (input
/// value `k + j` at bf16 position `j`), while the running sums stay `WORDS` f32. `zero`, `splat`,
/// `load`, `store`, `mul` and `hsum` work on f32 words (sums, scales, the NF4 table); `load` and
/// `store` also move operand vectors as raw words (the packed input, a decoded chunk).
pub(super) trait Simd {
    type V: Copy;
    /// Input values (`k`) per vector: how far one step of the product moves.
    const LANES: usize;
    /// 32-bit words per vector: the stride of the packed input and of the running sums.
    const WORDS: usize = Self::LANES;
    /// Rows per register tile.
    const RMAX: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(v: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `c` plus the products of the operand vectors `a` (inputs) and `b` (weights); on the f32
    /// sets lane by lane, on a bf16-product set each f32 lane takes two adjacent products.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn hsum(v: Self::V) -> f32;
    /// `LANES` f32 weights as an operand vector (a plain load, unless the set rounds them).
    #[inline(always)]
    unsafe fn f32(p: *const f32) -> Self::V {
        Self::load(p)
    }
    /// `LANES` bf16 values as an operand vector.
    unsafe fn bf16(p: *const u16) -> Self::V;
    /// `LANES` f16 values as an operand vector.
    unsafe fn f16(p: *const u16) -> Self::V;
    /// `table[code]` of the `LANES` codes in `LANES / 2` bytes, first code in the high nibble,
    /// as an operand vector (`table`: 16 f32, a block's codes already scaled by its absmax).
    unsafe fn nf4(p: *const u8, table: *const f32) -> Self::V;
    /// `NF4_CODE[code] × scale` (the product in f32) of the `LANES` codes at `p`, as an operand
    /// vector.
    #[inline(always)]
    unsafe fn nf4_scaled(p: *const u8, scale: f32) -> Self::V {
        Self::mul(Self::nf4(p, NF4_CODE.as_ptr()), Self::splat(scale))
    }
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

/// Portable primitives: 8-wide arrays, plain arithmetic.
pub(super) struct Portable;

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
