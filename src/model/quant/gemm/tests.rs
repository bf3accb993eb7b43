use super::*;
use crate::quant::nf4::Nf4Weight;

/// Deterministic values in [-1, 1) (an LCG; no rand dependency in this crate).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The plain product in f64 of widened weights `w` (`out × in`).
fn reference(w: &[f32], out: usize, inp: usize, x: &[f32], rows: usize) -> Vec<f32> {
    let mut y = vec![0f32; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let s: f64 = (0..inp)
                .map(|k| x[r * inp + k] as f64 * w[o * inp + k] as f64)
                .sum();
            y[r * out + o] = s as f32;
        }
    }
    y
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn isas() -> Vec<CpuIsa> {
    let found: Vec<CpuIsa> = CpuIsa::ALL.into_iter().filter(|i| i.available()).collect();
    assert!(found.contains(&CpuIsa::Scalar));
    found
}

/// Shapes whose `in` and `out` are not multiples of any vector, chunk or column block, and
/// some that are (the vector part alone, and several `KC` chunks).
const SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (3, 7),
    (13, 17),
    (37, 70),
    (70, 257),
    (5, 600),
    (64, 512),
];

#[test]
fn dense_formats_match_the_plain_product_on_every_isa() {
    for isa in isas() {
        for (si, &(out, inp)) in SHAPES.iter().enumerate() {
            let w = values(si as u64, out * inp);
            let w16: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
            let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let wide16: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
            let wideh: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
            for rows in 1..=33 {
                let x = values(100 + rows as u64, rows * inp);
                let cases = [
                    ("f32", Weight::F32(&w), &w),
                    ("bf16", Weight::Bf16(&w16), &wide16),
                    ("f16", Weight::F16(&wh), &wideh),
                ];
                for (name, weight, wide) in cases {
                    let y = matmul_rows_isa(isa, weight, out, inp, &x, rows);
                    let err = rel_err(&y, &reference(wide, out, inp, &x, rows));
                    assert!(
                        err < 1e-5,
                        "{} {name} {out}×{inp}, {rows} rows: relative error {err}",
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn nf4_matches_dequantise_then_matmul_on_every_isa() {
    // (out, in, blocksize): 96 and 48 inputs make blocks of 64 straddle weight rows with
    // vectors inside blocks; 70 and 75 inputs are not whole vectors (odd rows start on odd
    // nibbles for 75); 256 and 2048 are the model's shape class.
    let shapes = [
        (5, 96, 64),
        (37, 48, 64),
        (9, 70, 64),
        (11, 75, 64),
        (33, 256, 64),
        (3, 2048, 128),
        (21, 64, 32),
        (7, 64, 6),
    ];
    for isa in isas() {
        for (si, &(out, inp, bs)) in shapes.iter().enumerate() {
            for double in [false, true] {
                let dense = values(7 + si as u64, out * inp);
                let q = Nf4Weight::quantize(&dense, (out, inp), bs, double).unwrap();
                let wide: Vec<f32> = q.dequantize::<f32>().unwrap();
                let view = Nf4View {
                    packed: &q.packed,
                    absmax: &q.absmax,
                    blocksize: q.blocksize,
                };
                for rows in 1..=33 {
                    let x = values(200 + rows as u64, rows * inp);
                    let y = matmul_rows_isa(isa, Weight::Nf4(view), out, inp, &x, rows);
                    let err = rel_err(&y, &reference(&wide, out, inp, &x, rows));
                    assert!(
                        err < 1e-5,
                        "{} nf4 {out}×{inp} bs {bs} double {double}, {rows} rows: {err}",
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn absmax_range_decodes_as_the_whole() {
    let dense = values(3, 40 * 64);
    for double in [false, true] {
        let q = Nf4Weight::quantize(&dense, (40, 64), 64, double).unwrap();
        let all = q.absmax.decode();
        let mut part = vec![0f32; 17];
        q.absmax.decode_range(9, &mut part);
        assert_eq!(part, all[9..26]);
    }
}

#[test]
fn isa_names_parse_and_the_cap_holds() {
    for i in CpuIsa::ALL {
        assert_eq!(CpuIsa::parse(i.name()), Some(i));
        assert!(CpuIsa::best_up_to(i) <= i);
    }
    assert_eq!(CpuIsa::parse("AVX2 "), Some(CpuIsa::Avx2));
    assert_eq!(CpuIsa::parse("sse"), None);
    assert_eq!(CpuIsa::best_up_to(CpuIsa::Scalar), CpuIsa::Scalar);
}

#[test]
fn the_kernels_serve_queries_only_and_each_switch_is_scoped_to_its_call() {
    assert!(
        !kernels_enabled(),
        "a page batch never takes the few-row kernels"
    );
    for_queries(|| {
        assert!(kernels_enabled());
        assert!(without_kernels(|| !kernels_enabled()));
        assert!(kernels_enabled());
    });
    assert!(!kernels_enabled());
}

#[test]
fn a_product_beside_adds_into_the_first_on_every_isa() {
    // An NF4 weight with a rank-5 f32 pair beside it, as an unmerged adapter is.
    let (out, inp, rank) = (70, 96, 5);
    let q = Nf4Weight::quantize(&values(11, out * inp), (out, inp), 64, true).unwrap();
    let wide: Vec<f32> = q.dequantize::<f32>().unwrap();
    let up = values(12, out * rank);
    for isa in isas() {
        for rows in [1, 13, 27, 33] {
            let x = values(300 + rows as u64, rows * inp);
            let low = values(400 + rows as u64, rows * rank);
            let view = Nf4View {
                packed: &q.packed,
                absmax: &q.absmax,
                blocksize: q.blocksize,
            };
            let beside = Beside {
                weight: Weight::F32(&up),
                x: &low,
                inp: rank,
            };
            let y = with_isa(isa, || {
                matmul_rows_beside(Weight::Nf4(view), out, inp, &x, rows, beside)
            });
            let want: Vec<f32> = reference(&wide, out, inp, &x, rows)
                .iter()
                .zip(reference(&up, out, rank, &low, rows))
                .map(|(a, b)| a + b)
                .collect();
            let err = rel_err(&y, &want);
            assert!(err < 1e-5, "{} beside, {rows} rows: {err}", isa.name());
        }
    }
}
