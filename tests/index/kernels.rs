//! Scoring kernels against naive references: exact MaxSim on every ISA this CPU has and both
//! AVX-512 kernels (page lengths around the kernels' chunk and block edges, query lengths around
//! their tile and register-group edges).

use pagesight::index::maxsim::{
    detected_isa, maxsim, maxsim_naive, Avx512Kernel, Isa, PreparedQuery, Scratch,
};
use pagesight::index::synthetic::Rng;
use pagesight::index::vectors::{pack_blocks, round_f16};

fn values(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
}

/// Every ISA this CPU has, and on AVX-512 both kernels (`Rows` applies from 9 query tokens).
fn kernel_runs() -> Vec<(Isa, Avx512Kernel)> {
    Isa::all()
        .into_iter()
        .filter(|i| i.available())
        .flat_map(|isa| match isa {
            Isa::Avx512 => vec![(isa, Avx512Kernel::Tiles), (isa, Avx512Kernel::Rows)],
            _ => vec![(isa, Avx512Kernel::Tiles)],
        })
        .collect()
}

/// Query lengths around the tile kernel's 4-row tiles and the row kernel's register groups (9 its
/// least, 28 one pass, 29+ two or more), odd dimensions, pages around chunk and block edges, and
/// all-negative pages (padding lanes must never win a max).
#[test]
fn exact_maxsim_equals_naive_on_every_isa_and_kernel() {
    let mut rng = Rng::new(7);
    let shapes = [
        (1, 1, 16),
        (3, 17, 32),
        (13, 33, 128),
        (20, 750, 128),
        (25, 47, 64),
        (7, 16, 8),
        (4, 64, 128),
        (5, 65, 128),
        (8, 128, 128),
        (9, 750, 128),
        (12, 17, 128),
        (13, 1, 64),
        (21, 129, 128),
        (2, 63, 3),
        (23, 33, 96),
        (28, 64, 128),
        (29, 65, 128),
        (30, 200, 96),
        (57, 129, 32),
        (11, 40, 33),
        (9, 17, 1),
    ];
    for &(nq, n, dim) in &shapes {
        let q = values(&mut rng, nq * dim);
        for shift in [0.0f32, -1.5] {
            let doc: Vec<f32> = values(&mut rng, n * dim)
                .into_iter()
                .map(|x| x * 0.5 + shift)
                .collect();
            let packed = pack_blocks(&doc, n, dim);
            let want = maxsim_naive(&q, nq, dim, &round_f16(&doc), n);
            for (isa, kernel) in kernel_runs() {
                let prepared = PreparedQuery::with_kernel(isa, kernel, &q, nq, dim);
                let got = prepared.score(&mut Scratch::default(), &packed, n);
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{isa:?} {kernel:?} nq{nq} n{n} dim{dim} shift{shift}: {got} vs {want}"
                );
            }
        }
    }
    // The one-call entry point takes the configured kernel.
    let (nq, n, dim) = (20, 300, 128);
    let (q, doc) = (values(&mut rng, nq * dim), values(&mut rng, n * dim));
    let want = maxsim_naive(&q, nq, dim, &round_f16(&doc), n);
    let got = maxsim(detected_isa(), &q, nq, dim, &pack_blocks(&doc, n, dim), n);
    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()));
}

/// One scratch across pages of every length, each page told the next one (the kernels prefetch
/// into it): scores are the naive ones whatever comes next, a short page or none.
#[test]
fn one_scratch_serves_pages_of_every_length() {
    let mut rng = Rng::new(9);
    let (nq, dim) = (11, 128);
    let q = values(&mut rng, nq * dim);
    let docs: Vec<(usize, Vec<f32>)> = [700usize, 3, 64, 1, 130, 750]
        .into_iter()
        .map(|n| (n, values(&mut rng, n * dim)))
        .collect();
    let packed: Vec<Vec<u16>> = docs.iter().map(|(n, d)| pack_blocks(d, *n, dim)).collect();
    for (isa, kernel) in kernel_runs() {
        let prepared = PreparedQuery::with_kernel(isa, kernel, &q, nq, dim);
        let mut scratch = Scratch::default();
        for (i, (n, doc)) in docs.iter().enumerate() {
            let next = packed.get(i + 1).map(|p| p.as_slice());
            let got = prepared.score_then(&mut scratch, &packed[i], *n, next);
            let want = maxsim_naive(&q, nq, dim, &round_f16(doc), *n);
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{isa:?} {kernel:?} n{n}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn simd_hamming_maxsim_equals_the_portable_one() {
    use pagesight::index::binary::{hamming_maxsim_with, query_words, simd_available, PageCodes};
    use pagesight::index::vectors::sign_codes;
    let dim = 128;
    if !simd_available(dim) {
        println!("no AVX-512 VPOPCNTDQ here: only the portable kernel runs");
    }
    let mut rng = Rng::new(3);
    for &(nq, n) in &[
        (1, 1),
        (3, 7),
        (8, 8),
        (9, 9),
        (20, 750),
        (17, 12),
        (64, 33),
        (70, 5),
    ] {
        let q = values(&mut rng, nq * dim);
        let doc = values(&mut rng, n * dim);
        let qw = query_words(&q, nq, dim);
        let codes = sign_codes(&doc, n, dim);
        let page = |next| PageCodes {
            codes: &codes,
            n_tokens: n,
            next,
        };
        let want = hamming_maxsim_with(false, &qw, nq, dim, page(None));
        // Naive: ±1 dot products, max per query row.
        let sign = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&x| if x >= 0.0 { 1.0 } else { -1.0 })
                .collect()
        };
        let naive = maxsim_naive(&sign(&q), nq, dim, &sign(&doc), n);
        assert_eq!(want, naive, "portable nq{nq} n{n}");
        let got = hamming_maxsim_with(true, &qw, nq, dim, page(None));
        assert_eq!(got, want, "simd nq{nq} n{n}");
        // Prefetching a next page (longer or shorter than this one) changes nothing.
        let next = sign_codes(&values(&mut rng, 2 * n * dim), 2 * n, dim);
        for next in [&next[..], &next[..16]] {
            let got = hamming_maxsim_with(true, &qw, nq, dim, page(Some(next)));
            assert_eq!(got, want, "simd nq{nq} n{n} with a next page");
        }
    }
}
