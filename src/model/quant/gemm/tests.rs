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
    reference_rounded(w, out, inp, x, rows, 0)
}

fn round_bf16(v: f32) -> f64 {
    bf16::from_f32(v).to_f64()
}

/// [`reference`] with the inputs and weights before `end` rounded to bf16 (nearest even): what a
/// bf16-product set computes when its vector part ends at `end`.
fn reference_rounded(
    w: &[f32],
    out: usize,
    inp: usize,
    x: &[f32],
    rows: usize,
    end: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let s: f64 = (0..inp)
                .map(|k| {
                    let (a, b) = (x[r * inp + k], w[o * inp + k]);
                    if k < end {
                        round_bf16(a) * round_bf16(b)
                    } else {
                        a as f64 * b as f64
                    }
                })
                .sum();
            y[r * out + o] = s as f32;
        }
    }
    y
}

/// Where `isa`'s vector part ends for `in` inputs: dense weights (`nf4_block` None) take whole
/// vectors; NF4 only where every vector lies inside one block of a power-of-two size (as
/// `Stream::vector_end` decides it, restated so a change there shows here).
fn vector_end(isa: CpuIsa, inp: usize, nf4_block: Option<usize>) -> usize {
    let lanes = isa.lanes();
    match nf4_block {
        None => inp - inp % lanes,
        Some(bs)
            if bs.is_power_of_two() && bs >= lanes.max(16) && inp.is_multiple_of(lanes.max(16)) =>
        {
            inp
        }
        Some(_) => 0,
    }
}

/// `(w, out, in, x, rows)` with the end of `isa`'s vector part (see [`vector_end`]) appended.
fn with_end<'a>(
    (w, out, inp, x, rows): (&'a [f32], usize, usize, &'a [f32], usize),
    isa: CpuIsa,
    nf4_block: Option<usize>,
) -> (&'a [f32], usize, usize, &'a [f32], usize, usize) {
    (w, out, inp, x, rows, vector_end(isa, inp, nf4_block))
}

/// How far a bf16-product result may be from the f32 product (max |Δ| / max |y|): bf16 keeps 8
/// bits, so each operand is within 2⁻⁹ and a product within ~2⁻⁸ of its value; on a sum the errors
/// mostly cancel. The issue that allowed bf16 products asked for 1e-2 on the query vectors.
const BF16_BOUND: f32 = 1e-2;

/// Checks `y`, `isa`'s product of weights `wide` (`out × in`, as f32) and `x` with its vector
/// part ending at `end` (see [`vector_end`]): on the f32 sets within 1e-5 of the exact product; on
/// a bf16-product set within 1e-5 of the product of the rounded operands, and within
/// [`BF16_BOUND`] of the exact one. `extra`: a product added into the same outputs (beside), as
/// (exact, rounded). Returns the bf16-product error against the exact product (0 on the others),
/// which the tests print so a run shows how much of the bound is used.
fn check(
    isa: CpuIsa,
    y: &[f32],
    (wide, out, inp, x, rows, end): (&[f32], usize, usize, &[f32], usize, usize),
    extra: Option<(Vec<f32>, Vec<f32>)>,
    what: &str,
) -> f32 {
    let add = |a: Vec<f32>, b: Option<&Vec<f32>>| -> Vec<f32> {
        match b {
            Some(b) => a.iter().zip(b).map(|(u, v)| u + v).collect(),
            None => a,
        }
    };
    let exact = add(
        reference(wide, out, inp, x, rows),
        extra.as_ref().map(|e| &e.0),
    );
    if !isa.bf16_products() {
        let err = rel_err(y, &exact);
        assert!(err < 1e-5, "{} {what}: relative error {err}", isa.name());
        return 0.0;
    }
    let rounded = add(
        reference_rounded(wide, out, inp, x, rows, end),
        extra.as_ref().map(|e| &e.1),
    );
    let err = rel_err(y, &rounded);
    assert!(
        err < 1e-5,
        "{} {what}: relative error {err} against the bf16-rounded operands' product",
        isa.name()
    );
    let err = rel_err(y, &exact);
    assert!(
        err < BF16_BOUND,
        "{} {what}: relative error {err} against the f32 product",
        isa.name()
    );
    err
}

fn print_seen(test: &str, seen: f32) {
    if isas().iter().any(|i| i.bf16_products()) {
        eprintln!(
            "{test}: bf16 products within {seen:.2e} of the f32 product (bound {BF16_BOUND:e})"
        );
    }
}

/// max |a − b| / max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// The sets this CPU runs (a set it lacks is covered where it has it; the portable one always).
fn isas() -> Vec<CpuIsa> {
    let found: Vec<CpuIsa> = CpuIsa::ALL.into_iter().filter(|i| i.available()).collect();
    assert!(found.contains(&CpuIsa::Scalar));
    let missing: Vec<&str> = CpuIsa::ALL
        .into_iter()
        .filter(|i| !found.contains(i))
        .map(CpuIsa::name)
        .collect();
    if !missing.is_empty() {
        eprintln!("this CPU lacks {missing:?}: not tested here");
    }
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
    let mut seen = 0f32;
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
                    let what = format!("{name} {out}×{inp}, {rows} rows");
                    let on = isa.for_weight(weight);
                    let shape = (wide.as_slice(), out, inp, x.as_slice(), rows);
                    let err = check(on, &y, with_end(shape, on, None), None, &what);
                    seen = seen.max(err);
                    if on != isa {
                        // f32 weights on the bf16-product set: the product keeps them f32, the
                        // kernel rounds them where asked.
                        let y = product_on((isa, isa), weight, out, inp, &x, rows, None);
                        let what = format!("{what}, rounded");
                        let err = check(isa, &y, with_end(shape, isa, None), None, &what);
                        seen = seen.max(err);
                    }
                }
            }
        }
    }
    print_seen("dense", seen);
}

#[test]
fn nf4_matches_dequantise_then_matmul_on_every_isa() {
    // (out, in, blocksize): 96 and 48 inputs make blocks of 64 straddle weight rows with
    // vectors inside blocks; 70 and 75 inputs are not whole vectors (odd rows start on odd
    // nibbles for 75); 256 and 2048 are the model's shape class. For the bf16-product set's
    // 32-value vectors: 96 and 160 inputs have blocks of 64 straddling rows, 48 is no whole
    // number of vectors, and blocks of 16 are shorter than a vector (all three the scalar tail
    // there, vectors on the f32 sets).
    let shapes = [
        (5, 96, 64),
        (13, 160, 64),
        (37, 48, 64),
        (9, 70, 64),
        (11, 75, 64),
        (33, 256, 64),
        (3, 2048, 128),
        (21, 64, 32),
        (9, 64, 16),
        (7, 64, 6),
    ];
    let mut seen = 0f32;
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
                    let what = format!("nf4 {out}×{inp} bs {bs} double {double}, {rows} rows");
                    let shape = with_end((&wide, out, inp, &x, rows), isa, Some(bs));
                    seen = seen.max(check(isa, &y, shape, None, &what));
                }
            }
        }
    }
    print_seen("nf4", seen);
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
    // An NF4 weight with a rank-5 or rank-32 f32 pair beside it, as an unmerged adapter is (32:
    // the model's rank, one whole vector of the bf16-product set).
    let (out, inp) = (70, 96);
    let q = Nf4Weight::quantize(&values(11, out * inp), (out, inp), 64, true).unwrap();
    let wide: Vec<f32> = q.dequantize::<f32>().unwrap();
    let mut seen = 0f32;
    for (isa, rank) in isas().into_iter().flat_map(|i| [(i, 5), (i, 32)]) {
        let up = values(12, out * rank);
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
            let shape = with_end((&wide, out, inp, &x, rows), isa, Some(64));
            // The pair beside is f32: f32 products, unless the kernel is made to round it.
            let second = |on: CpuIsa| {
                let end = if on.bf16_products() {
                    vector_end(on, rank, None)
                } else {
                    0
                };
                let exact = reference(&up, out, rank, &low, rows);
                (exact, reference_rounded(&up, out, rank, &low, rows, end))
            };
            let what = format!("beside rank {rank}, {rows} rows");
            let on = isa.for_weight(beside.weight);
            seen = seen.max(check(isa, &y, shape, Some(second(on)), &what));
            if on != isa {
                let y = product_on(
                    (isa, isa),
                    Weight::Nf4(view),
                    out,
                    inp,
                    &x,
                    rows,
                    Some(beside),
                );
                let what = format!("{what}, rounded");
                seen = seen.max(check(isa, &y, shape, Some(second(isa)), &what));
            }
        }
    }
    print_seen("beside", seen);
}

#[test]
fn the_kernel_settings_go_with_a_forward_to_another_thread() {
    let cap = isas()[isas().len() - 1];
    let context = with_isa(cap, || {
        for_queries(|| without_kernels(crate::quant::gemm::KernelContext::here))
    });
    let (isa, enabled, off_enabled) = std::thread::spawn(move || {
        let seen = context.apply(|| (isa(), kernels_enabled(), without_kernels(kernels_enabled)));
        // And the thread's own settings come back after.
        assert!(!kernels_enabled());
        seen
    })
    .join()
    .unwrap();
    assert_eq!(isa, CpuIsa::best_up_to(cap));
    assert!(!enabled, "without_kernels was carried");
    assert!(!off_enabled);
    let context = for_queries(crate::quant::gemm::KernelContext::here);
    assert!(std::thread::spawn(move || context.apply(kernels_enabled))
        .join()
        .unwrap());
}

#[test]
fn rows_packed_by_the_pool_match_the_plain_product_on_every_isa() {
    // 33 rows of 2080 inputs: past the size the calling thread packs alone, so the pool's tasks
    // pack the rows (2080 = 65 vectors of 32, 130 of 16, 260 of 8: a last task short of its 16
    // vectors on every set), and 40 outputs make blocks of 4 columns for the tasks to share.
    let (out, inp, rows) = (40, 2080, 33);
    assert!(rows * inp >= 64 * 1024);
    let w = values(7, out * inp);
    let x = values(8, rows * inp);
    let w16: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
    let wide16: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
    let mut seen = 0f32;
    for isa in isas() {
        let y = matmul_rows_isa(isa, Weight::Bf16(&w16), out, inp, &x, rows);
        let shape = (wide16.as_slice(), out, inp, x.as_slice(), rows);
        let what = format!("bf16 {out}×{inp}, {rows} rows");
        seen = seen.max(check(isa, &y, with_end(shape, isa, None), None, &what));
    }
    print_seen("packed by the pool", seen);
}
