//! The floating-point element types a weight can come in and be dequantised to.

use candle_core::DType;
use half::{bf16, f16};

/// An element type NF4 reads from and writes to. Every conversion to `f32` is exact; the
/// conversion back rounds to nearest-even, as bitsandbytes' CPU kernels do.
pub trait QuantElement: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl QuantElement for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl QuantElement for bf16 {
    const DTYPE: DType = DType::BF16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    /// Round to nearest even by integer arithmetic, as bitsandbytes' `float_to_bf16` (NaN kept
    /// NaN); inlined because dequantisation writes tens of millions of these.
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        if v.is_nan() {
            return bf16::NAN;
        }
        let bits = v.to_bits();
        let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
        bf16::from_bits((rounded >> 16) as u16)
    }
}

impl QuantElement for f16 {
    const DTYPE: DType = DType::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}
