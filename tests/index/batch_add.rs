//! `Index::add_pages` (vector work on all cores) against one `add_page` per record, and its
//! all-or-nothing check of a batch.

use super::{hash, prov};
use pagesight::index::synthetic::Corpus;
use pagesight::index::{Index, PageRecord};
use std::path::Path;

#[test]
fn add_pages_matches_add_page_and_refuses_a_bad_batch_whole() {
    let dim = 64;
    let corpus = Corpus::new(9, dim, 8);
    let h = hash(3);
    let vectors: Vec<Vec<f32>> = (0..6).map(|p| corpus.page(p, 20 + p as usize)).collect();
    let rec = |p: usize| PageRecord {
        file_hash: h,
        page: p as u32 + 1,
        text: "words",
        vectors: &vectors[p],
        n_tokens: 20 + p,
        image_rows: 0..0,
        merged_grid: (0, 0),
    };
    let (one, batch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Index::open_or_create(one.path(), &prov(dim)).unwrap();
    let mut b = Index::open_or_create(batch.path(), &prov(dim)).unwrap();
    for ix in [&mut a, &mut b] {
        ix.begin_file(&h, Path::new("/b.pdf"), None, 6).unwrap();
    }
    for p in 0..6 {
        a.add_page(rec(p)).unwrap();
    }
    // A duplicate inside the batch, a page already added, a bad page: nothing of it goes in.
    let mut dup = vec![rec(0), rec(1), rec(1)];
    assert!(b
        .add_pages(&dup)
        .unwrap_err()
        .to_string()
        .contains("already"));
    b.add_pages(&[rec(0), rec(1)]).unwrap();
    dup = vec![rec(2), rec(1)];
    assert!(b.add_pages(&dup).is_err());
    let bad = PageRecord {
        n_tokens: 3,
        ..rec(2)
    };
    assert!(b.add_pages(&[rec(3), bad]).is_err());
    b.add_pages(&[rec(2), rec(3), rec(4), rec(5)]).unwrap();
    a.commit().unwrap();
    b.commit().unwrap();
    let (sa, sb) = (a.searcher().unwrap(), b.searcher().unwrap());
    assert_eq!(sa.live_pages(), sb.live_pages());
    for (id, _, _) in sa.live_pages() {
        assert_eq!(
            sa.page_vector_bits(id),
            sb.page_vector_bits(id),
            "page {id}"
        );
        assert_eq!(sa.page_text(id).unwrap(), sb.page_text(id).unwrap());
    }
    assert_eq!(sb.num_pages(), 6);
}

#[test]
fn pack_blocks_lays_tokens_out_dimension_major_per_block() {
    use pagesight::index::vectors::{pack_blocks, round_f16, unpack_all, unpack_token};
    let dim = 48;
    let corpus = Corpus::new(4, dim, 4);
    for n in [1, 15, 16, 17, 40] {
        let v = corpus.page(n as u64, n);
        let packed = pack_blocks(&v, n, dim);
        assert_eq!(packed.len(), n.div_ceil(16) * 16 * dim);
        for t in 0..n.div_ceil(16) * 16 {
            for d in 0..dim {
                let want = if t < n {
                    half::f16::from_f32(v[t * dim + d]).to_bits()
                } else {
                    0
                };
                assert_eq!(
                    packed[(t / 16) * dim * 16 + d * 16 + t % 16],
                    want,
                    "n {n} t {t} d {d}"
                );
            }
        }
        let back = unpack_token(&packed, dim, n - 1);
        assert_eq!(back[0], half::f16::from_f32(v[(n - 1) * dim]).to_f32());
        assert_eq!(unpack_all(&packed, dim, n), round_f16(&v), "n {n}");
    }
}

#[test]
fn sign_codes_set_bit_d_for_each_non_negative_value() {
    use pagesight::index::vectors::sign_codes;
    for dim in [48, 128] {
        let corpus = Corpus::new(5, dim, 4);
        let n = 21;
        let mut v = corpus.page(3, n);
        v[1] = -0.0;
        let codes = sign_codes(&v, n, dim);
        let cb = dim.div_ceil(64) * 8;
        assert_eq!(codes.len(), n * cb);
        for t in 0..n {
            for d in 0..cb * 8 {
                let bit = codes[t * cb + d / 8] >> (d % 8) & 1 == 1;
                assert_eq!(
                    bit,
                    d < dim && v[t * dim + d] >= 0.0,
                    "dim {dim} t {t} d {d}"
                );
            }
        }
    }
}
