//! The NF4 dequantisation kernel on the device: bit-exact against `pagesight_model::quant`'s CPU
//! dequantisation (itself bit-exact with bitsandbytes) on weights quantised from random values
//! (odd lengths and a short last block included, plain and double-quantised absmax), and its
//! bandwidth against a device-to-device copy measured on the same card.

use anyhow::{anyhow, Result};
use candle_core::cuda_backend::cudarc::driver::{sys, CudaEvent, CudaStream, DevicePtrMut};
use candle_core::Device;
use half::{bf16, f16};
use pagesight_common::stats::median;
use pagesight_model::gpu::nf4_kernel::{Nf4DeviceBuffers, Nf4Kernels, Nf4Layout, Nf4Output, BLOCK};
use pagesight_model::quant::{Nf4Weight, QuantElement};
use serde_json::json;
use std::sync::Arc;

pub struct Nf4Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

pub struct Nf4Checks {
    pub checks: Vec<Nf4Check>,
    pub json: serde_json::Value,
}

/// Weights drawn from a deterministic pseudo-random normal-ish distribution (sum of uniforms),
/// with a few blocks scaled far up or down so absmax values spread like real layers'.
fn random_weight(rows: usize, cols: usize, seed: u64, double_quant: bool) -> Result<Nf4Weight> {
    let mut s = seed.max(1);
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    };
    let values: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let v = (next() + next() + next() - 1.5) * 0.05;
            if (i / BLOCK) % 7 == 3 {
                v * 30.0
            } else {
                v
            }
        })
        .collect();
    Nf4Weight::quantize(&values, (rows, cols), BLOCK, double_quant)
}

fn compare<T: Nf4Output + QuantElement + bytemuck::Pod>(
    k: &Nf4Kernels,
    stream: &Arc<CudaStream>,
    w: &Nf4Weight,
    d: &Nf4DeviceBuffers,
    poison: T,
    layout: Nf4Layout,
) -> Result<Option<usize>> {
    // Poisoned output: an element the kernel fails to write cannot pass.
    let len = layout.len(w.numel());
    let mut out = stream.clone_htod(&vec![poison; len])?;
    let ptr = out.device_ptr_mut(stream).0;
    k.dequantise_to_ptr::<T>(stream, &d.view(), ptr, len, layout)?;
    let got: Vec<T> = stream.clone_dtoh(&out)?;
    let flat: Vec<T> = w.dequantize::<T>()?;
    let want: Vec<T> = match layout {
        Nf4Layout::Flat => flat,
        Nf4Layout::Padded {
            rows,
            cols,
            rows_pad,
            cols_pad,
        } => {
            let mut m = vec![T::from_f32(0.0); rows_pad * cols_pad];
            for r in 0..rows {
                m[r * cols_pad..r * cols_pad + cols]
                    .copy_from_slice(&flat[r * cols..(r + 1) * cols]);
            }
            m
        }
    };
    let bits = |v: &T| bytemuck::bytes_of(v).to_vec();
    Ok(got.iter().zip(&want).position(|(a, b)| bits(a) != bits(b)))
}

fn timing_event(stream: &Arc<CudaStream>) -> Result<CudaEvent> {
    Ok(stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?)
}

pub fn run(device: &Device) -> Result<Nf4Checks> {
    let stream = device
        .as_cuda_device()
        .map_err(|_| anyhow!("NF4 check needs a CUDA device"))?
        .cuda_stream();
    let k = Nf4Kernels::load(&stream)?;
    let mut checks = Vec::new();
    // Exactness: odd lengths (short last block, odd nibble count) and a real layer's shape.
    let shapes = [(1usize, 1usize), (1, 17), (257, 65), (11008, 2048)];
    for (i, &(rows, cols)) in shapes.iter().enumerate() {
        for double in [true, false] {
            let w = random_weight(rows, cols, 0xabc + i as u64, double)?;
            let d = Nf4DeviceBuffers::upload(&stream, &w, false)?;
            let tag = format!(
                "{rows}x{cols}_{}",
                if double {
                    "double_quant"
                } else {
                    "plain_absmax"
                }
            );
            let flat = Nf4Layout::Flat;
            let results = [
                (
                    "bf16",
                    compare(&k, &stream, &w, &d, bf16::from_bits(0x7fc1), flat)?,
                ),
                (
                    "f16",
                    compare(&k, &stream, &w, &d, f16::from_bits(0x7e01), flat)?,
                ),
                (
                    "f32",
                    compare(&k, &stream, &w, &d, f32::from_bits(0x7fc0_0001), flat)?,
                ),
            ];
            for (ty, bad) in results {
                checks.push(Nf4Check {
                    name: format!("nf4_{ty}_{tag}"),
                    ok: bad.is_none(),
                    detail: match bad {
                        None => format!(
                            "{} weights bit-identical to the CPU dequantisation",
                            w.numel()
                        ),
                        Some(j) => format!("first mismatch at element {j}"),
                    },
                });
            }
        }
    }

    // The zero-padded layout (the vision MLP's GEMM shapes and an odd small one): the weight in
    // the top-left corner, every padding element zero, over a poisoned buffer.
    for (i, &(rows, cols, rows_pad, cols_pad)) in [
        (257usize, 65usize, 264usize, 72usize),
        (3420, 1280, 3456, 1280),
        (1280, 3420, 1280, 3456),
    ]
    .iter()
    .enumerate()
    {
        let w = random_weight(rows, cols, 0xdef + i as u64, true)?;
        let d = Nf4DeviceBuffers::upload(&stream, &w, false)?;
        let layout = Nf4Layout::Padded {
            rows,
            cols,
            rows_pad,
            cols_pad,
        };
        let results = [
            (
                "bf16",
                compare(&k, &stream, &w, &d, bf16::from_bits(0x7fc1), layout)?,
            ),
            (
                "f32",
                compare(&k, &stream, &w, &d, f32::from_bits(0x7fc0_0001), layout)?,
            ),
        ];
        for (ty, bad) in results {
            checks.push(Nf4Check {
                name: format!("nf4_padded_{ty}_{rows}x{cols}_to_{rows_pad}x{cols_pad}"),
                ok: bad.is_none(),
                detail: match bad {
                    None => "weight bit-identical, padding zero".to_string(),
                    Some(j) => format!("first mismatch at padded element {j}"),
                },
            });
        }
    }

    checks.extend(rows_checks(&k, &stream)?);

    // Bandwidth: 64 Mi weights (≈ 169 MB moved with bf16 output, over the L2 size), median of 20.
    let w = random_weight(8192, 8192, 7, true)?;
    let n = w.numel();
    let d = Nf4DeviceBuffers::upload(&stream, &w, false)?;
    let mut out = stream.alloc_zeros::<bf16>(n)?;
    let view = d.view();
    let bytes = (n / 2 + n.div_ceil(BLOCK) + n.div_ceil(BLOCK * 256) * 4 + n * 2) as f64;
    let mut times = Vec::new();
    for rep in 0..25 {
        let a = timing_event(&stream)?;
        k.dequantise(&stream, &view, &mut out)?;
        let b = timing_event(&stream)?;
        if rep >= 5 {
            times.push(a.elapsed_ms(&b)? as f64);
        }
    }
    let nf4_ms = median(times);
    let nf4_gbs = bytes / (nf4_ms / 1e3) / 1e9;

    // Device-to-device copy of 512 MiB: bytes read + written.
    let copy_n = 512usize << 20;
    let src = stream.alloc_zeros::<u8>(copy_n)?;
    let mut dst = stream.alloc_zeros::<u8>(copy_n)?;
    let mut times = Vec::new();
    for rep in 0..12 {
        let a = timing_event(&stream)?;
        stream.memcpy_dtod(&src, &mut dst)?;
        let b = timing_event(&stream)?;
        if rep >= 2 {
            times.push(a.elapsed_ms(&b)? as f64);
        }
    }
    let copy_ms = median(times);
    let copy_gbs = 2.0 * copy_n as f64 / (copy_ms / 1e3) / 1e9;
    let fraction = nf4_gbs / copy_gbs;
    checks.push(Nf4Check {
        name: "nf4_bandwidth".into(),
        ok: fraction >= 0.5,
        detail: format!(
            "{nf4_ms:.3} ms for 64 Mi weights → bf16: {nf4_gbs:.0} GB/s = {:.0} % of the measured \
             d2d copy ({copy_gbs:.0} GB/s)",
            fraction * 100.0
        ),
    });
    let json = json!({
        "weights": n, "bytes_moved": bytes, "kernel_ms_median": nf4_ms, "kernel_gb_per_s": nf4_gbs,
        "d2d_copy_gb_per_s": copy_gbs, "fraction_of_copy": fraction,
    });
    Ok(Nf4Checks { checks, json })
}

/// The few-rows product from the codes (`Nf4Kernels::matmul_rows`, a query's path) against an
/// f64 product of the same bf16 weights (the CPU dequantisation) and inputs: with the bias, then
/// accumulated once more onto its own output (`2·x·wᵀ + bias`). Row counts across both m16
/// tiles, one and odd; the language model's widest shapes.
fn rows_checks(k: &Nf4Kernels, stream: &Arc<CudaStream>) -> Result<Vec<Nf4Check>> {
    let mut checks = Vec::new();
    let cases = [
        (1usize, 64usize, 128usize),
        (7, 96, 192),
        (16, 256, 2048),
        (17, 64, 64),
        (32, 2048, 2048),
        (23, 2048, 11008),
    ];
    for (i, &(rows, out, inp)) in cases.iter().enumerate() {
        let w = random_weight(out, inp, 0x5eed + i as u64, i % 2 == 0)?;
        let d = Nf4DeviceBuffers::upload(stream, &w, false)?;
        let wd: Vec<f64> = w.dequantize::<bf16>()?.iter().map(|v| v.to_f64()).collect();
        let unit = |j: usize, salt: usize| (((j * 2654435761 + salt) % 1000) as f64 / 500.0) - 1.0;
        let x: Vec<bf16> = (0..rows * inp)
            .map(|j| bf16::from_f64(unit(j, 7)))
            .collect();
        let bias: Vec<bf16> = (0..out).map(|j| bf16::from_f64(unit(j, 3))).collect();
        let want: Vec<f64> = (0..rows * out)
            .map(|e| {
                let (m, n) = (e / out, e % out);
                let dot: f64 = (0..inp)
                    .map(|c| x[m * inp + c].to_f64() * wd[n * inp + c])
                    .sum();
                dot + bias[n].to_f64()
            })
            .collect();
        let xd = stream.clone_htod(&x)?;
        let bd = stream.clone_htod(&bias)?;
        let mut yd = stream.clone_htod(&vec![bf16::from_bits(0x7fc1); rows * out])?;
        let ptr = |s: &candle_core::cuda_backend::cudarc::driver::CudaSlice<bf16>| {
            use candle_core::cuda_backend::cudarc::driver::DevicePtr;
            s.device_ptr(stream).0
        };
        let (xp, bp) = (ptr(&xd), ptr(&bd));
        let yp = yd.device_ptr_mut(stream).0;
        let view = d.view();
        k.matmul_rows(stream, &view, (out, inp), rows, xp, bp, (yp, out), false)?;
        let once: Vec<bf16> = stream.clone_dtoh(&yd)?;
        k.matmul_rows(stream, &view, (out, inp), rows, xp, 0, (yp, out), true)?;
        let twice: Vec<bf16> = stream.clone_dtoh(&yd)?;
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs())).max(1e-30);
        let worst = |got: &[bf16], f: &dyn Fn(usize) -> f64| {
            got.iter()
                .enumerate()
                .map(|(e, g)| (g.to_f64() - f(e)).abs() / scale)
                .fold(
                    0f64,
                    |a, v| if v.is_nan() { f64::INFINITY } else { a.max(v) },
                )
        };
        let e1 = worst(&once, &|e| want[e]);
        let e2 = worst(&twice, &|e| 2.0 * want[e] - bias[e % out].to_f64());
        // bf16 output: one rounding (2⁻⁸ of a value) once, two for the sum.
        let ok = e1 <= 6e-3 && e2 <= 1.2e-2;
        checks.push(Nf4Check {
            name: format!("nf4_rows_{rows}x{inp}_to_{out}"),
            ok,
            detail: format!(
                "max error / max |y|: with bias {e1:.2e} (≤ 6e-3), accumulated {e2:.2e} (≤ 1.2e-2)"
            ),
        });
    }
    Ok(checks)
}
