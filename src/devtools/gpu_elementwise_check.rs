//! The row kernels on the GPU (selftest part) against candle's ops on the CPU over the same
//! inputs. RMSNorm with and without the residual add before it: the updated stream must be the
//! same f32 sums bit for bit, the norm within a bf16 rounding (the kernel sums the squares in
//! another order); row widths the model's (1280, 2048, 3584), the narrowest and the widest the
//! kernel holds, and one past it, which the fallback serves. SiLU·mul of a stacked projection's
//! halves and of two separate ones, in 16-byte vectors and one value at a time (the CPU rounds
//! the SiLU to bf16 before the product, the kernel once after it).

use super::gpu_nf4_check::Nf4Check as Check;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use pagesight_model::gpu::fused;

/// Two bf16 roundings of the largest output, relative to it.
const TOLERANCE: f64 = 8e-3;

/// The largest |a − b| (infinite where a value is NaN: `f64::max` would drop it) and the
/// largest |b|.
fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<(f64, f64)> {
    let a: Vec<f32> = a.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(
            0.0,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        );
    let scale = b.iter().map(|y| y.abs() as f64).fold(0.0, f64::max);
    Ok((diff, scale))
}

pub fn run(device: &Device) -> Result<Vec<Check>> {
    let mut checks = norm_checks(device)?;
    checks.extend(silu_mul_checks(device)?);
    Ok(checks)
}

fn silu_mul_checks(device: &Device) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    // (rows, h): the LM's stacked width (16-byte vectors), the vision tower's padded one, an odd
    // one (one value at a time).
    for (rows, h) in [(9usize, 11008usize), (6, 3456), (5, 37)] {
        let cpu = Device::Cpu;
        let gu = (Tensor::randn(0f32, 1.0, (rows, 2 * h), &cpu)? * 3.0)?.to_dtype(DType::BF16)?;
        let (g, u) = (
            gu.narrow(1, 0, h)?.contiguous()?,
            gu.narrow(1, h, h)?.contiguous()?,
        );
        let want = fused::silu_mul(&g, &u)?;
        let halves = fused::silu_mul_halves(&gu.to_device(device)?)?;
        let separate = fused::silu_mul(&g.to_device(device)?, &u.to_device(device)?)?;
        let (dh, s) = max_abs_diff(&halves, &want)?;
        let (ds, _) = max_abs_diff(&separate, &want)?;
        let (rh, rs) = (dh / s.max(1e-30), ds / s.max(1e-30));
        checks.push(Check {
            name: format!("silu_mul_{rows}x{h}"),
            ok: rh <= TOLERANCE && rs <= TOLERANCE && halves.dims() == [rows, h],
            detail: format!(
                "stacked halves {rh:.2e}, separate {rs:.2e} of the largest value (bound \
                 {TOLERANCE:.0e})"
            ),
        });
    }
    Ok(checks)
}

fn norm_checks(device: &Device) -> Result<Vec<Check>> {
    let eps = 1e-6f32;
    let mut checks = Vec::new();
    for (rows, dim) in [
        (1usize, 4usize),
        (7, 1280),
        (33, 2048),
        (5, 3584),
        (3, 4096),
        (2, 4100),
    ] {
        let cpu = Device::Cpu;
        let x = (Tensor::randn(0f32, 1.0, (rows, dim), &cpu)? * 3.0)?;
        let h = Tensor::randn(0f32, 1.0, (rows, dim), &cpu)?.to_dtype(DType::BF16)?;
        let w = Tensor::rand(0.5f32, 1.5, dim, &cpu)?;
        let (want_x, want_n) = fused::residual_rms_norm(&x, &h, &w, eps, DType::BF16)?;
        let want_plain = fused::rms_norm(&x, &w, eps, DType::BF16)?;
        let (xg, hg, wg) = (
            x.to_device(device)?,
            h.to_device(device)?,
            w.to_device(device)?,
        );
        let (got_x, got_n) = fused::residual_rms_norm(&xg, &hg, &wg, eps, DType::BF16)?;
        let got_plain = fused::rms_norm(&xg, &wg, eps, DType::BF16)?;
        let (dx, _) = max_abs_diff(&got_x, &want_x)?;
        let (dn, sn) = max_abs_diff(&got_n, &want_n)?;
        let (dp, sp) = max_abs_diff(&got_plain, &want_plain)?;
        let (rn, rp) = (dn / sn.max(1e-30), dp / sp.max(1e-30));
        checks.push(Check {
            name: format!("rms_norm_{rows}x{dim}"),
            ok: dx == 0.0 && rn <= TOLERANCE && rp <= TOLERANCE && got_n.dtype() == DType::BF16,
            detail: format!(
                "stream max |Δ| {dx:e} (must be 0); norm after the add {rn:.2e}, norm alone \
                 {rp:.2e} of the largest value (bound {TOLERANCE:.0e})"
            ),
        });
    }
    Ok(checks)
}
