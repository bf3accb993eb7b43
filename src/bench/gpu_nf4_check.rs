//! The NF4 dequantisation kernel on the device: bit-exact against a plain CPU evaluation of the
//! same formula on random inputs (short last block and odd lengths included), and its bandwidth
//! against a device-to-device copy measured on the same card.
//!
//! The CPU oracle is written out here in its simplest form on purpose (one line per step of the
//! formula), independent of the kernel's vectorised layout.

use anyhow::{anyhow, Result};
use candle_core::cuda_backend::cudarc::driver::{sys, CudaEvent, CudaSlice, CudaStream};
use candle_core::Device;
use half::{bf16, f16};
use serde_json::json;
use std::sync::Arc;

use crate::engine::gpu::nf4_kernel::{
    Nf4Absmax, Nf4DeviceWeight, Nf4Kernels, Nf4Output, ABSMAX2_BLOCK, BLOCK,
};

pub struct Nf4Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

pub struct Nf4Checks {
    pub checks: Vec<Nf4Check>,
    pub json: serde_json::Value,
}

struct HostWeight {
    n: usize,
    packed: Vec<u8>,
    qabsmax: Vec<u8>,
    absmax2: Vec<f32>,
    offset: f32,
    code2: Vec<f32>,
    absmax_plain: Vec<f32>,
    nf4: Vec<f32>,
}

fn random_weight(n: usize, seed: u64) -> HostWeight {
    let mut s = seed.max(1);
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let unit = |next: &mut dyn FnMut() -> u64| (next() >> 40) as f32 / (1u64 << 24) as f32;
    let blocks = n.div_ceil(BLOCK);
    HostWeight {
        n,
        packed: (0..n.div_ceil(2)).map(|_| next() as u8).collect(),
        qabsmax: (0..blocks).map(|_| next() as u8).collect(),
        absmax2: (0..blocks.div_ceil(ABSMAX2_BLOCK))
            .map(|_| 0.01 + unit(&mut next))
            .collect(),
        offset: unit(&mut next) * 0.1,
        code2: (0..256).map(|_| unit(&mut next) * 2.0 - 1.0).collect(),
        absmax_plain: (0..blocks).map(|_| 0.01 + unit(&mut next)).collect(),
        nf4: (0..16).map(|_| unit(&mut next) * 2.0 - 1.0).collect(),
    }
}

fn cpu_dequant<T>(w: &HostWeight, double: bool, convert: impl Fn(f32) -> T) -> Vec<T> {
    (0..w.n)
        .map(|e| {
            let byte = w.packed[e / 2];
            let q = if e % 2 == 0 { byte >> 4 } else { byte & 15 };
            let b = e / BLOCK;
            let absmax = if double {
                let scaled = w.code2[w.qabsmax[b] as usize] * w.absmax2[b / ABSMAX2_BLOCK];
                scaled + w.offset
            } else {
                w.absmax_plain[b]
            };
            convert(w.nf4[q as usize] * absmax)
        })
        .collect()
}

struct DeviceWeight {
    packed: CudaSlice<u8>,
    qabsmax: CudaSlice<u8>,
    absmax2: CudaSlice<f32>,
    code2: CudaSlice<f32>,
    absmax_plain: CudaSlice<f32>,
    nf4: CudaSlice<f32>,
}

fn upload(stream: &Arc<CudaStream>, w: &HostWeight) -> Result<DeviceWeight> {
    Ok(DeviceWeight {
        packed: stream.clone_htod(&w.packed)?,
        qabsmax: stream.clone_htod(&w.qabsmax)?,
        absmax2: stream.clone_htod(&w.absmax2)?,
        code2: stream.clone_htod(&w.code2)?,
        absmax_plain: stream.clone_htod(&w.absmax_plain)?,
        nf4: stream.clone_htod(&w.nf4)?,
    })
}

fn view<'a>(d: &'a DeviceWeight, n: usize, offset: f32, double: bool) -> Nf4DeviceWeight<'a> {
    Nf4DeviceWeight {
        packed: &d.packed,
        absmax: if double {
            Nf4Absmax::Double {
                codes: &d.qabsmax,
                absmax2: &d.absmax2,
                code2: &d.code2,
                offset,
            }
        } else {
            Nf4Absmax::Plain(&d.absmax_plain)
        },
        nf4_code: &d.nf4,
        n,
    }
}

fn dequant_on_device<T: Nf4Output + Clone + Default + bytemuck::Pod>(
    k: &Nf4Kernels,
    stream: &Arc<CudaStream>,
    w: &HostWeight,
    d: &DeviceWeight,
    double: bool,
    poison: T,
) -> Result<Vec<T>> {
    // Poisoned output: an element the kernel fails to write cannot pass.
    let mut out = stream.clone_htod(&vec![poison; w.n])?;
    k.dequantise(stream, &view(d, w.n, w.offset, double), &mut out)?;
    Ok(stream.clone_dtoh(&out)?)
}

fn timing_event(stream: &Arc<CudaStream>) -> Result<CudaEvent> {
    Ok(stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(device: &Device) -> Result<Nf4Checks> {
    let stream = device
        .as_cuda_device()
        .map_err(|_| anyhow!("NF4 check needs a CUDA device"))?
        .cuda_stream();
    let k = Nf4Kernels::load(&stream)?;
    let mut checks = Vec::new();
    // Exactness: odd lengths (short last block, odd nibble count) and a real layer's size.
    for (i, n) in [1usize, 17, 64 * 257 + 37, 11008 * 2048]
        .into_iter()
        .enumerate()
    {
        let w = random_weight(n, 0xabc + i as u64);
        let d = upload(&stream, &w)?;
        for double in [true, false] {
            let tag = format!(
                "n{n}_{}",
                if double {
                    "double_quant"
                } else {
                    "plain_absmax"
                }
            );
            let got = dequant_on_device(&k, &stream, &w, &d, double, bf16::from_bits(0x7fc1))?;
            let want = cpu_dequant(&w, double, bf16::from_f32);
            let bad = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            checks.push(Nf4Check {
                name: format!("nf4_bf16_{tag}"),
                ok: bad.is_none(),
                detail: format!("first mismatch {bad:?}"),
            });
            let got = dequant_on_device(&k, &stream, &w, &d, double, f16::from_bits(0x7e01))?;
            let want = cpu_dequant(&w, double, f16::from_f32);
            let bad = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            checks.push(Nf4Check {
                name: format!("nf4_f16_{tag}"),
                ok: bad.is_none(),
                detail: format!("first mismatch {bad:?}"),
            });
            let got = dequant_on_device(&k, &stream, &w, &d, double, f32::from_bits(0x7fc0_0001))?;
            let want = cpu_dequant(&w, double, |x| x);
            let bad = got
                .iter()
                .zip(&want)
                .position(|(a, b)| a.to_bits() != b.to_bits());
            checks.push(Nf4Check {
                name: format!("nf4_f32_{tag}"),
                ok: bad.is_none(),
                detail: format!("first mismatch {bad:?}"),
            });
        }
    }

    // Bandwidth: 64 Mi weights (160 MiB moved with bf16 output, over the L2 size), median of 20.
    let n = 64usize << 20;
    let w = random_weight(n, 7);
    let d = upload(&stream, &w)?;
    let mut out = stream.alloc_zeros::<bf16>(n)?;
    let v = view(&d, n, w.offset, true);
    let bytes = (n / 2 + n.div_ceil(BLOCK) + n.div_ceil(BLOCK * ABSMAX2_BLOCK) * 4 + n * 2) as f64;
    let mut times = Vec::new();
    for rep in 0..25 {
        let a = timing_event(&stream)?;
        k.dequantise(&stream, &v, &mut out)?;
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
            "{:.3} ms for 64 Mi weights → bf16: {nf4_gbs:.0} GB/s = {:.0} % of the measured d2d copy ({copy_gbs:.0} GB/s)",
            nf4_ms,
            fraction * 100.0
        ),
    });
    let json = json!({
        "weights": n, "bytes_moved": bytes, "kernel_ms_median": nf4_ms, "kernel_gb_per_s": nf4_gbs,
        "d2d_copy_gb_per_s": copy_gbs, "fraction_of_copy": fraction,
    });
    Ok(Nf4Checks { checks, json })
}
