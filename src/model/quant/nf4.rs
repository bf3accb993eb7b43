//! NF4 quantisation exactly as bitsandbytes 0.50.2 computes it on the CPU
//! (`bitsandbytes.functional.quantize_4bit(quant_type="nf4")`, default backend):
//!
//! - the weight is flattened row-major and upcast to f32 (bf16/f16 → f32 is exact);
//! - blocks of `blocksize` (64) values; absmax per block in f32;
//! - full blocks are scaled by `x · (1/absmax)` (a reciprocal then a product), the short last
//!   block by `x / absmax` (a true division) — the two round differently, so both are kept;
//!   a zero full block keeps absmax 0 (its values scale to 0), a zero short block stores 1e-38;
//! - the scaled value, clamped to [−1, 1], takes the code whose midpoint interval holds it, ties
//!   (a value exactly on a midpoint) going to the lower code;
//! - two codes a byte, the first element in the high nibble; an odd count is padded with the
//!   code of 0.0;
//! - double quantisation: offset = mean(absmax), `absmax − offset` quantised with the signed
//!   8-bit dynamic map in blocks of 256 ([`super::blockwise8`]).
//!
//! Dequantisation is `code[nibble] · absmax[i / blocksize]` in f32, then rounded to the output type.

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

use super::blockwise8;
use super::element::QuantElement;

/// The NF4 code table (bitsandbytes' `get_4bit_type("nf4")`), sorted ascending.
// The digits are bitsandbytes' own, kept as written there.
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_800_998_687_7,
    -0.525_073_051_452_636_7,
    -0.394_917_488_098_144_53,
    -0.284_441_381_692_886_35,
    -0.184_773_430_228_233_34,
    -0.091_050_036_251_544_95,
    0.0,
    0.079_580_299_556_255_34,
    0.160_930_201_411_247_25,
    0.246_112_301_945_686_34,
    0.337_915_241_718_292_24,
    0.440_709_829_330_444_34,
    0.562_617_003_917_694_1,
    0.722_956_836_223_602_3,
    1.0,
];

/// bitsandbytes' default NF4 block size, the one transformers uses.
pub const NF4_BLOCKSIZE: usize = 64;
/// Block size of the double quantisation of absmax values.
pub const ABSMAX_BLOCKSIZE: usize = 256;
/// The floor bitsandbytes clamps a divisor absmax to.
const ABSMAX_FLOOR: f32 = 1e-38;

/// The midpoints between neighbouring codes, computed as torch does: `(a + b) / 2` in f32.
fn midpoints() -> [f32; 15] {
    let mut m = [0f32; 15];
    for (i, slot) in m.iter_mut().enumerate() {
        *slot = (NF4_CODE[i] + NF4_CODE[i + 1]) / 2.0;
    }
    m
}

/// Index of the code for a value already scaled by absmax: the number of midpoints strictly
/// below the clamped value (`torch.bucketize(..., right=False)`), so a tie takes the lower code.
#[inline(always)]
fn nf4_index(scaled: f32, mids: &[f32; 15]) -> u8 {
    let v = scaled.clamp(-1.0, 1.0);
    mids.iter().map(|&m| (m < v) as u8).sum()
}

/// Per-block scale statistics of an NF4 weight.
#[derive(Clone, Debug, PartialEq)]
pub enum AbsmaxState {
    /// One f32 absmax per block.
    Plain(Vec<f32>),
    /// Double quantisation: absmax ≈ `dynamic_map[codes[i]] · absmax2[i / 256] + offset`.
    Double {
        codes: Vec<u8>,
        absmax2: Vec<f32>,
        offset: f32,
    },
}

impl AbsmaxState {
    pub fn block_count(&self) -> usize {
        match self {
            AbsmaxState::Plain(a) => a.len(),
            AbsmaxState::Double { codes, .. } => codes.len(),
        }
    }

    /// The absmax value of every block, in f32 (decoded when double-quantised, exactly as
    /// bitsandbytes' `dequantize_blockwise(...) + offset`).
    pub fn decode(&self) -> Vec<f32> {
        match self {
            AbsmaxState::Plain(a) => a.clone(),
            AbsmaxState::Double {
                codes,
                absmax2,
                offset,
            } => {
                let mut v = blockwise8::dequantize_blockwise(codes, absmax2, ABSMAX_BLOCKSIZE);
                v.iter_mut().for_each(|a| *a += offset);
                v
            }
        }
    }

    /// The absmax values of blocks `first .. first + out.len()`, as [`Self::decode`] gives them
    /// (the same arithmetic, so the same bits).
    pub fn decode_range(&self, first: usize, out: &mut [f32]) {
        match self {
            AbsmaxState::Plain(a) => out.copy_from_slice(&a[first..first + out.len()]),
            AbsmaxState::Double {
                codes,
                absmax2,
                offset,
            } => {
                let code = blockwise8::dynamic_map();
                for (i, o) in out.iter_mut().enumerate() {
                    let b = first + i;
                    *o = code[codes[b] as usize] * absmax2[b / ABSMAX_BLOCKSIZE] + offset;
                }
            }
        }
    }

    /// Bytes this state occupies.
    pub fn bytes(&self) -> usize {
        match self {
            AbsmaxState::Plain(a) => a.len() * 4,
            AbsmaxState::Double { codes, absmax2, .. } => codes.len() + absmax2.len() * 4 + 4,
        }
    }

    /// Double-quantises plain absmax values the way `quantize_4bit(compress_statistics=True)`
    /// does. The offset is the mean (bitsandbytes uses torch's f32 `mean`, whose summation order
    /// depends on SIMD width and thread count; here the sum is exact to f64 and rounded once).
    pub fn double_quantize(absmax: &[f32]) -> AbsmaxState {
        let offset = if absmax.is_empty() {
            0.0
        } else {
            let sum: f64 = absmax.iter().map(|&a| a as f64).sum();
            (sum as f32) / absmax.len() as f32
        };
        Self::double_quantize_with_offset(absmax, offset)
    }

    /// As [`Self::double_quantize`] with a given offset.
    pub fn double_quantize_with_offset(absmax: &[f32], offset: f32) -> AbsmaxState {
        let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let (codes, absmax2) = blockwise8::quantize_blockwise(&centred, ABSMAX_BLOCKSIZE);
        AbsmaxState::Double {
            codes,
            absmax2,
            offset,
        }
    }
}

/// A weight matrix `[out, in]` in NF4.
#[derive(Clone, Debug, PartialEq)]
pub struct Nf4Weight {
    /// Two codes a byte, first element in the high nibble; `ceil(out·in / 2)` bytes.
    pub packed: Vec<u8>,
    pub absmax: AbsmaxState,
    /// `(out_features, in_features)`.
    pub shape: (usize, usize),
    /// The dtype the weight came in (and dequantises to by default).
    pub dtype: DType,
    pub blocksize: usize,
}

impl Nf4Weight {
    /// Quantises `values` (row-major `shape`), `blocksize` an even number ≥ 2 (bitsandbytes
    /// accepts 32…4096), `double_quant` as `compress_statistics`.
    pub fn quantize<T: QuantElement>(
        values: &[T],
        shape: (usize, usize),
        blocksize: usize,
        double_quant: bool,
    ) -> Result<Self> {
        let n = shape.0 * shape.1;
        ensure!(
            values.len() == n,
            "NF4 quantise: {} values for a {}×{} weight",
            values.len(),
            shape.0,
            shape.1
        );
        ensure!(
            blocksize >= 2 && blocksize.is_multiple_of(2),
            "NF4 quantise: block size {blocksize} must be an even number ≥ 2 (bitsandbytes uses 64)"
        );
        let mids = midpoints();
        let pad_code = nf4_index(0.0, &mids);
        let blocks = n.div_ceil(blocksize);
        let mut packed = vec![0u8; n.div_ceil(2)];
        let mut absmax = vec![0f32; blocks];
        // Work in groups of whole blocks; blocks are even-sized, so each group owns its bytes.
        const BLOCKS_PER_TASK: usize = 64;
        packed
            .par_chunks_mut(blocksize * BLOCKS_PER_TASK / 2)
            .zip(absmax.par_chunks_mut(BLOCKS_PER_TASK))
            .zip(values.par_chunks(blocksize * BLOCKS_PER_TASK))
            .for_each(|((bytes, amax), vals)| {
                for ((block, out), am) in vals
                    .chunks(blocksize)
                    .zip(bytes.chunks_mut(blocksize / 2))
                    .zip(amax.iter_mut())
                {
                    let raw = block.iter().fold(0f32, |acc, x| acc.max(x.to_f32().abs()));
                    let short = block.len() < blocksize;
                    let divisor = raw.max(ABSMAX_FLOOR);
                    // A short last block stores its clamped absmax; full blocks the raw one.
                    *am = if short { divisor } else { raw };
                    let recip = 1.0f32 / divisor;
                    let code = |x: T| {
                        let x = x.to_f32();
                        let scaled = if short { x / divisor } else { x * recip };
                        nf4_index(scaled, &mids)
                    };
                    for (pair, byte) in block.chunks(2).zip(out.iter_mut()) {
                        let hi = code(pair[0]);
                        let lo = if pair.len() == 2 {
                            code(pair[1])
                        } else {
                            pad_code
                        };
                        *byte = (hi << 4) | lo;
                    }
                }
            });
        let absmax = if double_quant {
            AbsmaxState::double_quantize(&absmax)
        } else {
            AbsmaxState::Plain(absmax)
        };
        Ok(Nf4Weight {
            packed,
            absmax,
            shape,
            dtype: T::DTYPE,
            blocksize,
        })
    }

    /// Quantises a 2-D tensor `[out, in]` of dtype f32, bf16 or f16 (copied to the host).
    pub fn quantize_tensor(weight: &Tensor, blocksize: usize, double_quant: bool) -> Result<Self> {
        let (rows, cols) = weight.dims2().with_context(|| {
            format!(
                "NF4 quantise: weight of shape {:?} is not 2-D",
                weight.shape()
            )
        })?;
        let flat = weight.flatten_all()?;
        match weight.dtype() {
            DType::F32 => Self::quantize(
                &flat.to_vec1::<f32>()?,
                (rows, cols),
                blocksize,
                double_quant,
            ),
            DType::BF16 => Self::quantize(
                &flat.to_vec1::<bf16>()?,
                (rows, cols),
                blocksize,
                double_quant,
            ),
            DType::F16 => Self::quantize(
                &flat.to_vec1::<f16>()?,
                (rows, cols),
                blocksize,
                double_quant,
            ),
            other => bail!("NF4 quantise: weight dtype {other:?} is not f32, bf16 or f16"),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.0 * self.shape.1
    }

    /// Bytes of packed codes plus statistics.
    pub fn bytes(&self) -> usize {
        self.packed.len() + self.absmax.bytes()
    }

    /// Writes the dequantised weight (row-major `[out, in]`) into `out`, whose length must be
    /// exactly `out·in`.
    pub fn dequantize_into<T: QuantElement>(&self, out: &mut [T]) -> Result<()> {
        let absmax = self.absmax.decode();
        self.dequantize_with_absmax(&absmax, out)
    }

    /// As [`Self::dequantize_into`], with absmax values already decoded (callers that
    /// dequantise repeatedly may keep them).
    pub fn dequantize_with_absmax<T: QuantElement>(
        &self,
        absmax: &[f32],
        out: &mut [T],
    ) -> Result<()> {
        let n = self.numel();
        ensure!(
            out.len() == n,
            "NF4 dequantise: output holds {} values, the {}×{} weight needs {n}",
            out.len(),
            self.shape.0,
            self.shape.1
        );
        ensure!(
            absmax.len() == n.div_ceil(self.blocksize) && self.packed.len() == n.div_ceil(2),
            "NF4 dequantise: corrupt weight ({} absmax, {} bytes for {n} values)",
            absmax.len(),
            self.packed.len()
        );
        let bs = self.blocksize;
        const BLOCKS_PER_TASK: usize = 64;
        out.par_chunks_mut(bs * BLOCKS_PER_TASK)
            .zip(self.packed.par_chunks(bs * BLOCKS_PER_TASK / 2))
            .zip(absmax.par_chunks(BLOCKS_PER_TASK))
            .for_each(|((out, bytes), amax)| {
                for ((o, b), &scale) in out.chunks_mut(bs).zip(bytes.chunks(bs / 2)).zip(amax) {
                    for (pair, &byte) in o.chunks_mut(2).zip(b) {
                        pair[0] = T::from_f32(NF4_CODE[(byte >> 4) as usize] * scale);
                        if let Some(second) = pair.get_mut(1) {
                            *second = T::from_f32(NF4_CODE[(byte & 0x0f) as usize] * scale);
                        }
                    }
                }
            });
        Ok(())
    }

    /// The dequantised weight as a host vector.
    pub fn dequantize<T: QuantElement>(&self) -> Result<Vec<T>> {
        let mut out = vec![T::from_f32(0.0); self.numel()];
        self.dequantize_into(&mut out)?;
        Ok(out)
    }
}
