//! W4A8 (`Compute::Fp8`): the scaling and rounding shared by the GPU's FP8 GEMMs and the CPU's
//! emulation of them.
//!
//! A weight row `r` (an output channel) is stored as E4M3 codes `q = e4m3(w · inv_r)` with
//! `scale_r = bound_r / 448`, `inv_r = 448 / bound_r`, where `bound_r` bounds the row's
//! magnitudes; an activation row (a token) the same with its own largest magnitude. The product
//! is `scale_w · scale_x · Σ q_w · q_x`, summed in f32. The GPU reads the scales from the same
//! host-computed values the emulation uses, so the two round every code alike.

use anyhow::{ensure, Result};
use candle_core::Device;

use super::nf4::Nf4Weight;
use crate::settings::{Compute, ModelSettings};

/// Whether a GPU of compute capability `(major, minor)` has FP8 tensor cores: 8.9 (Ada) and
/// later (Hopper, Blackwell).
pub fn has_fp8_tensor_cores((major, minor): (i32, i32)) -> bool {
    (major, minor) >= (8, 9)
}

/// `--compute fp8` on a GPU needs FP8 tensor cores (compute capability 8.9: Ada, Hopper and
/// later); on the CPU it is the emulation and always runs.
pub fn check_device(settings: &ModelSettings, device: &Device) -> Result<()> {
    if settings.compute_in_effect() != Compute::Fp8 {
        return Ok(());
    }
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let (major, minor) = d
            .cuda_stream()
            .context()
            .compute_capability()
            .map_err(|e| anyhow::anyhow!("reading the GPU's compute capability: {e:?}"))?;
        anyhow::ensure!(
            has_fp8_tensor_cores((major, minor)),
            "--compute fp8 needs FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper, \
             Blackwell); {} is sm_{major}{minor}: use --compute dtype",
            settings.device
        );
    }
    let _ = device;
    Ok(())
}

/// Products of at most this many rows (a query's tokens) skip FP8 on either device and
/// multiply from the NF4 codes in the dtype's arithmetic (`gpu::nf4_kernel::ROWS_MAX` on the
/// GPU): a query is latency-bound, and FP8 would first write every layer out as codes.
pub const FEW_ROWS: usize = 32;

/// Whether an `(out, inp)` product runs in FP8: the FP8 GEMM wants rows of whole 16-byte
/// vectors (input width a multiple of 16) and bf16 outputs in whole 16-byte runs (8). Other
/// shapes keep the dtype's arithmetic, on the GPU and in the CPU's emulation alike.
pub fn shape_fits((out, inp): (usize, usize)) -> bool {
    inp.is_multiple_of(16) && out.is_multiple_of(8)
}

/// Whether the NF4 layer called `name` (its checkpoint key without `.weight`) computes in FP8
/// under `Compute::Fp8`: the gated MLPs' projections (gate, up, down), where most of the GEMM
/// time is. The attention's projections keep the dtype's arithmetic: rounding q and k to three
/// mantissa bits moves every score the softmax exponentiates, and those layers carry most of
/// what FP8 on every layer moved the page vectors (`docs/benchmarks.md`, "FP8 compute"); the
/// output projections are too small for FP8 to pay for quantising their input (`bench gemm`).
pub fn layer_takes_fp8(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    matches!(last, "gate_proj" | "up_proj" | "down_proj")
}

/// The largest finite E4M3 magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// `v` rounded to the nearest E4M3 value (ties to even, saturating at ±448), as the GPU's
/// `cvt.rn.satfinite.e4m3x2.f32` rounds it.
pub fn round_e4m3(v: f32) -> f32 {
    float8::F8E4M3::from_f32(v).to_f32()
}

/// `(scale, inverse)` for a row whose magnitudes are at most `bound`: `448 / bound` maps the
/// row onto E4M3's range. An all-zero (or non-finite) row gets 1 and 1.
pub fn scale_pair(bound: f32) -> (f32, f32) {
    if bound > 0.0 && bound.is_finite() {
        (bound / E4M3_MAX, E4M3_MAX / bound)
    } else {
        (1.0, 1.0)
    }
}

/// Each output row's `(scale, inverse)` for an NF4 weight: the bound is the largest absmax of
/// the 64-weight blocks the row touches (an NF4 value is its code, at most 1 in magnitude,
/// times its block's absmax), so no code saturates and none needs the dequantised row.
pub fn weight_row_scales(w: &Nf4Weight) -> Result<Vec<(f32, f32)>> {
    let (rows, cols) = w.shape;
    let absmax = w.absmax.decode();
    ensure!(
        w.blocksize > 0 && absmax.len() >= (rows * cols).div_ceil(w.blocksize),
        "fp8 scales: {} absmax values for a {rows}×{cols} weight in blocks of {}",
        absmax.len(),
        w.blocksize
    );
    Ok((0..rows)
        .map(|r| {
            let (first, last) = (r * cols / w.blocksize, (r * cols + cols - 1) / w.blocksize);
            let bound = absmax[first..=last]
                .iter()
                .fold(0.0f32, |m, a| m.max(a.abs()));
            scale_pair(bound)
        })
        .collect())
}

/// Rows of `cols` values quantised as the FP8 GEMM sees them, in place: each row's values become
/// `e4m3(v · inv) · scale` for its own largest magnitude (the activations' per-token scaling).
pub fn round_rows(values: &mut [f32], cols: usize) {
    for row in values.chunks_mut(cols.max(1)) {
        let bound = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        round_row(row, scale_pair(bound));
    }
}

/// One row's values as `e4m3(v · inv) · scale`.
pub fn round_row(row: &mut [f32], (scale, inv): (f32, f32)) {
    for v in row {
        *v = round_e4m3(*v * inv) * scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_rounds_to_nearest_even_and_saturates() {
        // E4M3 has 3 mantissa bits: between 1 and 2 the step is 1/8.
        assert_eq!(round_e4m3(1.0), 1.0);
        assert_eq!(round_e4m3(1.0625), 1.0, "a tie rounds to the even code");
        assert_eq!(round_e4m3(1.1875), 1.25, "a tie rounds to the even code");
        assert_eq!(round_e4m3(1.07), 1.125);
        assert_eq!(round_e4m3(-3.3), -3.25);
        assert_eq!(round_e4m3(448.0), 448.0);
        assert_eq!(round_e4m3(1e6), 448.0, "saturates, never NaN");
        assert_eq!(round_e4m3(-1e6), -448.0);
        // The smallest subnormal is 2^-9.
        assert_eq!(round_e4m3(2f32.powi(-9)), 2f32.powi(-9));
        assert_eq!(round_e4m3(2f32.powi(-11)), 0.0);
    }

    #[test]
    fn only_aligned_shapes_take_fp8() {
        assert!(shape_fits((11008, 2048)) && shape_fits((3456, 1280)) && shape_fits((256, 2048)));
        assert!(
            !shape_fits((1280, 3420)),
            "an input width not a multiple of 16"
        );
        assert!(!shape_fits((3420, 1280)), "outputs not a multiple of 8");
    }

    #[test]
    fn each_token_row_uses_its_own_range() {
        let mut rows = vec![0.5, -2.0, 1.0, 0.001, 0.002, -0.004, 0.0, 0.0, 0.0];
        round_rows(&mut rows, 3);
        // The largest magnitude of each row maps to ±448 and back exactly.
        assert_eq!(rows[1], -2.0);
        assert_eq!(rows[5], -0.004);
        assert!((rows[3] - 0.001).abs() <= 0.001 / 16.0);
        assert_eq!(&rows[6..], &[0.0, 0.0, 0.0], "a zero row stays zero");
    }

    #[test]
    fn weight_rows_are_bounded_by_their_blocks_absmax() {
        // 3 rows of 96: rows straddle the 64-weight blocks.
        let w: Vec<f32> = (0..288)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let q = Nf4Weight::quantize(&w, (3, 96), 64, false).unwrap();
        let deq = q.dequantize::<f32>().unwrap();
        let scales = weight_row_scales(&q).unwrap();
        for (r, &(scale, inv)) in scales.iter().enumerate() {
            let row = &deq[r * 96..(r + 1) * 96];
            let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(amax * inv <= E4M3_MAX * 1.0001, "row {r} would saturate");
            assert!((scale * inv - 1.0).abs() < 1e-6);
        }
    }
}
