//! The NEON primitives (AArch64: Apple silicon, Graviton, Snapdragon laptops), and the entry point
//! compiled for them. NEON is part of every AArch64 CPU, so the set is always available there.
//!
//! A vector is 4 f32 (128 bits). AArch64 has 32 vector registers, so a tile holds up to 28 rows'
//! running sums: a query of 23–28 tokens is one tile, each weight vector decoded once and
//! multiplied into every row. f16 weights are widened one value at a time (the f16 vector types
//! are not stable in Rust); the model's weights are bf16 or NF4, which widen in registers.

use super::job::{Job, Sums};
use super::simd::Simd;
use super::stream::Stream;
use half::f16;
use std::arch::aarch64::*;

/// The vector part of a task with NEON; returns where it stopped.
#[target_feature(enable = "neon")]
pub(super) unsafe fn neon<W: Stream>(job: &Job, w: &W, sums: &mut Sums) -> usize {
    job.columns::<Neon, W>(w, sums)
}

pub(super) struct Neon;

impl Simd for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;
    // 28 accumulators of the 32 registers, one for the weight, the rest for the inputs.
    const RMAX: usize = 28;
    tile_by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28);
    #[inline(always)]
    unsafe fn zero() -> float32x4_t {
        vdupq_n_f32(0.0)
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> float32x4_t {
        vdupq_n_f32(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        vst1q_f32(p, v)
    }
    #[inline(always)]
    unsafe fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        // vfmaq_f32(c, a, b) = c + a · b, one rounding.
        vfmaq_f32(c, a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vmulq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn hsum(v: float32x4_t) -> f32 {
        vaddvq_f32(v)
    }
    #[inline(always)]
    unsafe fn bf16(p: *const u16) -> float32x4_t {
        // A bf16 is the high half of the f32 with the same bits.
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p)))
    }
    #[inline(always)]
    unsafe fn f16(p: *const u16) -> float32x4_t {
        let h = p.cast::<[u16; 4]>().read_unaligned();
        let v = h.map(|b| f16::from_bits(b).to_f32());
        vld1q_f32(v.as_ptr())
    }
    #[inline(always)]
    unsafe fn nf4(p: *const u8, table: *const f32) -> float32x4_t {
        // 4 codes in 2 bytes, the first in the high nibble.
        let (b0, b1) = (*p as usize, *p.add(1) as usize);
        let v = [
            *table.add(b0 >> 4),
            *table.add(b0 & 0x0f),
            *table.add(b1 >> 4),
            *table.add(b1 & 0x0f),
        ];
        vld1q_f32(v.as_ptr())
    }
}
