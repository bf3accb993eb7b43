//! Timings for the report (ignored by default; they take tens of seconds):
//! `cargo test --test integration nf4::timing -- --ignored --nocapture --test-threads 1`

use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use half::bf16;
use pagesight::model::quant::{Nf4Linear, Nf4Weight, QLinear, QuantContext};
use pagesight::model::settings::Quant;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
#[ignore]
fn quantise_2048_by_11008() {
    let mut rng = StdRng::seed_from_u64(1);
    let (out, inp) = (11008, 2048);
    let w: Vec<bf16> = (0..out * inp)
        .map(|_| bf16::from_f32(rng.random::<f32>() * 0.1 - 0.05))
        .collect();
    for double in [false, true] {
        let t = best_of(2, || {
            Nf4Weight::quantize(&w, (out, inp), 64, double).unwrap()
        });
        println!(
            "quantise {out}x{inp} bf16 double_quant={double}: {:.3} s",
            t
        );
    }
    let q = Nf4Weight::quantize(&w, (out, inp), 64, true).unwrap();
    let mut buf = vec![bf16::ZERO; out * inp];
    let t = best_of(3, || q.dequantize_into(&mut buf).unwrap());
    println!(
        "dequantise {out}x{inp} -> bf16: {:.1} ms ({:.2} GB/s written)",
        t * 1e3,
        (out * inp * 2) as f64 / t / 1e9
    );
    let mut buf = vec![0f32; out * inp];
    let t = best_of(3, || q.dequantize_into(&mut buf).unwrap());
    println!("dequantise {out}x{inp} -> f32: {:.1} ms", t * 1e3);
}

#[test]
#[ignore]
fn short_inputs_direct_vs_scratch() {
    let mut rng = StdRng::seed_from_u64(2);
    let (out, inp) = (2048, 2048);
    let w = Tensor::from_vec(
        (0..out * inp)
            .map(|_| rng.random::<f32>() * 0.1 - 0.05)
            .collect::<Vec<_>>(),
        (out, inp),
        &Device::Cpu,
    )
    .unwrap();
    let ctx = QuantContext::new(&Device::Cpu);
    let dense = QLinear::dense(w.clone(), None);
    let QLinear::Nf4(nf4) = dense.clone().quantize(Quant::Nf4, &ctx).unwrap() else {
        unreachable!()
    };
    let nf4: Nf4Linear = nf4;
    for dtype in [DType::F32, DType::BF16] {
        let dense = QLinear::dense(w.to_dtype(dtype).unwrap(), None);
        for rows in [1usize, 4, 8, 16, 32, 128] {
            let x = Tensor::from_vec(
                (0..rows * inp)
                    .map(|_| rng.random::<f32>())
                    .collect::<Vec<_>>(),
                (rows, inp),
                &Device::Cpu,
            )
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
            let direct = best_of(3, || nf4.forward_direct(&x).unwrap());
            let scratch = best_of(3, || nf4.forward_dequantized(&x).unwrap());
            let d = best_of(3, || dense.forward(&x).unwrap());
            println!(
                "{dtype:?} {out}x{inp} rows {rows:4}: direct {:7.2} ms  dequant+gemm {:7.2} ms  dense {:7.2} ms",
                direct * 1e3,
                scratch * 1e3,
                d * 1e3
            );
        }
    }
    let _ = nf4
        .forward(&Tensor::zeros((1, inp), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
}
