//! Weight formats as the kernels read them: dense f32/bf16/f16, NF4 codes with their block
//! scales, and a column's chunk already decoded.

use super::simd::Simd;
use super::{Nf4View, KC};
use crate::quant::nf4::NF4_CODE;
use half::{bf16, f16};

/// A weight format: its values as vectors, and one by one for the tails.
pub(super) trait Stream: Sync {
    /// Whether a vector costs several instructions (NF4's table lookups and scaling): then a
    /// column's chunk is decoded once for several row tiles. Widening bf16/f16 costs about what
    /// the extra store and load would.
    const DECODES: bool = false;
    /// Whether `[0, k_end)` of every row may be read as vectors of `lanes` (`k_end` a multiple
    /// of `lanes`); the rest goes through [`Stream::get`].
    fn vector_end(&self, inp: usize, lanes: usize) -> usize {
        inp - inp % lanes
    }
    /// `W[o, k .. k + LANES]` as an operand vector.
    unsafe fn vec<S: Simd>(&self, o: usize, k: usize, inp: usize) -> S::V;
    /// `W[o, k0..k1]` (whole vectors) as operand vectors at `dst`, `WORDS` words each.
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
            S::store(dst.add(chunk_word::<S>(k - k0)), self.vec::<S>(o, k, inp));
            k += S::LANES;
        }
    }
    /// Where `W[o, k]` is stored (possibly past the end: only prefetched).
    fn addr(&self, o: usize, k: usize, inp: usize) -> *const u8;
    /// `W[o, k]`.
    fn get(&self, o: usize, k: usize, inp: usize) -> f32;
}

/// Where the vector of input `k` (a multiple of `LANES`) of a chunk lies in its decoded words.
#[inline(always)]
fn chunk_word<S: Simd>(k: usize) -> usize {
    k / S::LANES * S::WORDS
}

/// A dense weight of element `T`.
pub(super) struct Dense<T>(pub(super) *const T);
// SAFETY: a read-only pointer into a slice that outlives the product (`matmul_rows_isa`).
unsafe impl<T> Sync for Dense<T> {}

/// A dense element type: how a vector and one value are read.
pub(super) trait Element: Copy {
    unsafe fn vec<S: Simd>(p: *const Self) -> S::V;
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    #[inline(always)]
    unsafe fn vec<S: Simd>(p: *const f32) -> S::V {
        S::f32(p)
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
pub(super) struct Nf4Stream<'a> {
    packed: &'a [u8],
    absmax: &'a [f32],
    first_block: usize,
    blocksize: usize,
    /// log2(blocksize) when it is a power of two ≥ 16 (then a vector of up to `blocksize` values
    /// starting on a multiple of its width never straddles a block).
    shift: Option<u32>,
}

impl<'a> Nf4Stream<'a> {
    pub(super) fn for_columns(
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
        // Whole vectors start on even elements (whole bytes) and inside one block: every vector
        // starts on a multiple of its width (`in` is one), and a block is whole vectors.
        match self.shift {
            Some(s) if 1 << s >= lanes && inp.is_multiple_of(lanes.max(16)) => inp,
            _ => 0,
        }
    }
    #[inline(always)]
    unsafe fn vec<S: Simd>(&self, o: usize, k: usize, inp: usize) -> S::V {
        let flat = o * inp + k;
        let shift = self.shift.unwrap_or(0);
        let scale = *self
            .absmax
            .get_unchecked((flat >> shift) - self.first_block);
        S::nf4_scaled(self.packed.as_ptr().add(flat / 2), scale)
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
                i += S::WORDS;
            }
            let block_end = (((block + 1) << shift) - o * inp).min(k1);
            while k < block_end {
                let v = S::nf4(self.packed.as_ptr().add((o * inp + k) / 2), table);
                S::store(dst.add(chunk_word::<S>(k - k0)), v);
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

/// A column's chunk of weights decoded to operand vectors (f32, or bf16 pairs on a bf16-product
/// set: input `k` at word `(k - k0) × WORDS / LANES`), read by the row tiles instead of the stored
/// format; addresses (prefetches) still point into the stored weight.
pub(super) struct Decoded<'a, W> {
    pub(super) values: ChunkValues,
    pub(super) source: &'a W,
    pub(super) k0: usize,
}

/// [`KC`] words (`KC` f32 or `2 × KC` bf16 values: a chunk either way), aligned for any vector
/// load.
#[repr(align(64))]
pub(super) struct ChunkValues(pub(super) [f32; KC]);

/// The 16 NF4 codes of one block, scaled by its absmax.
#[repr(align(64))]
pub(super) struct CodeTable(pub(super) [f32; 16]);

impl<W: Stream> Decoded<'_, W> {
    /// Decodes column `o`, inputs `k0..k1` (whole vectors).
    #[inline(always)]
    pub(super) unsafe fn fill<S: Simd>(&mut self, o: usize, k0: usize, k1: usize, inp: usize) {
        self.k0 = k0;
        self.source
            .decode::<S>(o, (k0, k1), inp, self.values.0.as_mut_ptr());
    }
}

impl<W: Stream> Stream for Decoded<'_, W> {
    #[inline(always)]
    unsafe fn vec<S: Simd>(&self, _o: usize, k: usize, _inp: usize) -> S::V {
        S::load(self.values.0.as_ptr().add(chunk_word::<S>(k - self.k0)))
    }
    #[inline(always)]
    fn addr(&self, o: usize, k: usize, inp: usize) -> *const u8 {
        self.source.addr(o, k, inp)
    }
    fn get(&self, o: usize, k: usize, inp: usize) -> f32 {
        self.source.get(o, k, inp)
    }
}
