//! Times the few-row CPU kernels (`quant::gemm`) on the 3B language model's layer shapes:
//! `cargo run --release -p pagesight-model --example cpu_gemm [rows] [reps] [copies]`. Prints,
//! per instruction set and weight format, the best wall time of `reps`, GFLOP/s, and GFLOP per
//! CPU second this process was given (the box may be shared). Those weights stay in the caches
//! between reps; with `copies` > 0 it also times the gate projection's NF4 shape over that many
//! distinct copies in turn, as a query's layers are read from memory.

use half::bf16;
use pagesight_model::quant::gemm::{self, matmul_rows_isa, CpuIsa, Nf4View, Weight};
use pagesight_model::quant::{huge_pages, Nf4Weight};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = args.first().copied().unwrap_or(26);
    let reps = args.get(1).copied().unwrap_or(5);
    let copies = args.get(2).copied().unwrap_or(0);
    println!("{rows} rows, {} threads", gemm::threads());
    if copies > 0 {
        from_memory(rows, reps, copies);
    }
    for (out, inp) in [
        (256, 2048),
        (2048, 2048),
        (11008, 2048),
        (2048, 11008),
        (11008, 32),
        (2048, 32),
    ] {
        let (dense, x) = operands(out, inp, rows);
        let w16: Vec<bf16> = dense.iter().map(|&v| bf16::from_f32(v)).collect();
        let q = Nf4Weight::quantize(&dense, (out, inp), 64, true).expect("quantise");
        // In huge pages, as the model's CPU weights are.
        for bytes in [
            bytemuck::cast_slice(&dense),
            bytemuck::cast_slice(&w16),
            &q.packed[..],
        ] {
            huge_pages::advise(bytes);
        }
        let nf4 = Weight::Nf4(Nf4View {
            packed: &q.packed,
            absmax: &q.absmax,
            blocksize: q.blocksize,
        });
        let flop = 2.0 * (rows * out * inp) as f64;
        for isa in CpuIsa::ALL.into_iter().filter(|i| i.available()) {
            for (name, w) in [
                ("nf4", nf4),
                ("bf16", Weight::Bf16(&w16)),
                ("f32", Weight::F32(&dense)),
            ] {
                let mut best = f64::MAX;
                let mut best_cpu = f64::MAX;
                for _ in 0..reps {
                    let (t, c) = (Instant::now(), cpu_seconds());
                    std::hint::black_box(matmul_rows_isa(isa, w, out, inp, &x, rows));
                    best = best.min(t.elapsed().as_secs_f64());
                    best_cpu = best_cpu.min(cpu_seconds() - c);
                }
                println!(
                    "{out:>5}×{inp:<5} {:<7} {name:<5} {:>8.2} ms {:>7.1} GFLOP/s {:>7.1} GFLOP/cpu-s",
                    isa.name(),
                    best * 1e3,
                    flop / best / 1e9,
                    flop / best_cpu / 1e9
                );
            }
        }
    }
}

/// The 11008×2048 NF4 product over `copies` distinct copies of the weight, one after another
/// (more than the last-level cache holds when `copies` × 11.3 MB is), on the best set: GFLOP/s and
/// the weights' GB/s, best of `reps` passes.
fn from_memory(rows: usize, reps: usize, copies: usize) {
    let (out, inp) = (11008, 2048);
    let (dense, x) = operands(out, inp, rows);
    let q = Nf4Weight::quantize(&dense, (out, inp), 64, true).expect("quantise");
    let packed: Vec<Vec<u8>> = (0..copies).map(|_| q.packed.clone()).collect();
    for p in &packed {
        huge_pages::advise(p);
    }
    let isa = CpuIsa::best_up_to(CpuIsa::Avx512Bf16);
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        for p in &packed {
            let w = Weight::Nf4(Nf4View {
                packed: p,
                absmax: &q.absmax,
                blocksize: q.blocksize,
            });
            std::hint::black_box(matmul_rows_isa(isa, w, out, inp, &x, rows));
        }
        best = best.min(t.elapsed().as_secs_f64() / copies as f64);
    }
    let flop = 2.0 * (rows * out * inp) as f64;
    println!(
        "{out:>5}×{inp:<5} {:<7} nf4 over {copies} copies ({:.0} MB): {:>8.2} ms {:>7.1} GFLOP/s {:>6.1} GB/s of weights",
        isa.name(),
        (copies * q.packed.len()) as f64 / 1e6,
        best * 1e3,
        flop / best / 1e9,
        q.packed.len() as f64 / best / 1e9
    );
}

/// A weight `out × in` and `rows` input rows of deterministic values in [-1, 1].
fn operands(out: usize, inp: usize, rows: usize) -> (Vec<f32>, Vec<f32>) {
    let dense = (0..out * inp)
        .map(|i: usize| (i.wrapping_mul(2654435761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x = (0..rows * inp)
        .map(|i: usize| (i.wrapping_mul(40503) % 997) as f32 / 498.0 - 1.0)
        .collect();
    (dense, x)
}
