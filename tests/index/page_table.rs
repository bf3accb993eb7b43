//! The fused MaxSim kernel's host side (`index::page_table`): the table, the padded query and the
//! group sums, run through a host emulation of the kernel (its lane → dimension mapping included)
//! against exact MaxSim. The CUDA kernel itself is checked on the GPU by `bench search --device
//! cuda` (fused vs cuBLAS top-10 and score difference).

use pagesight::index::maxsim::maxsim_naive;
use pagesight::index::page_table::{
    encode, kernel_supports, pad_query, sum_groups, ChunkAddr, PaddedQuery, TableEntry,
    TOKEN_MULTIPLE,
};
use pagesight::index::synthetic::{Corpus, Rng};
use pagesight::index::vectors::round_f16;

/// Host "device memory": f16 values; chunk addresses are byte offsets into it.
struct Memory {
    values: Vec<half::f16>,
    chunks: Vec<ChunkAddr>,
}

/// Pages of `lens` tokens packed into chunks of `per_chunk` pages of one padded length (as the
/// tensor scorer does: padded with copies of the first token), with some filler in between so
/// chunk bases are not all zero.
fn pack(
    pages: &[Vec<f32>],
    lens: &[usize],
    dim: usize,
    per_chunk: usize,
) -> (Memory, Vec<(usize, usize)>) {
    let mut mem = Memory {
        values: vec![half::f16::ZERO; 64],
        chunks: Vec::new(),
    };
    let mut at = Vec::new();
    for (c, members) in (0..pages.len())
        .collect::<Vec<_>>()
        .chunks(per_chunk)
        .enumerate()
    {
        let len = members
            .iter()
            .map(|&p| lens[p])
            .max()
            .unwrap()
            .div_ceil(TOKEN_MULTIPLE)
            * TOKEN_MULTIPLE;
        let base = mem.values.len() as u64 * 2;
        for (row, &p) in members.iter().enumerate() {
            let first = &pages[p][..dim];
            for tok in 0..len {
                let src = if tok < lens[p] {
                    &pages[p][tok * dim..(tok + 1) * dim]
                } else {
                    first
                };
                mem.values
                    .extend(src.iter().map(|&x| half::f16::from_f32(x)));
            }
            at.push((c, row));
        }
        mem.chunks.push(ChunkAddr {
            base,
            pages: members.len(),
            len,
        });
        mem.values
            .extend(std::iter::repeat_n(half::f16::from_f32(9.0), 8 * dim)); // filler
    }
    (mem, at)
}

/// What the kernel computes, step by step as it does: per table entry and query group, for
/// each query row and token, the sum over k-steps of f16 products in f32 in the kernel's lane
/// order (lane quad t, 16-byte chunk 4i + t, half j: dims 8(4i + t) + 4j + 0..4), the max over
/// tokens, the sum over rows; written to `partial[group · n_out + out]`.
fn emulate(table: &[u64], mem: &Memory, q: &PaddedQuery, dim: usize, n_out: usize) -> Vec<f32> {
    let mut partial = vec![0f32; q.groups * n_out];
    let nc = dim / 32;
    for e in table.chunks(2) {
        let first = (e[0] / 2) as usize;
        let (len, out) = ((e[1] & 0xffff_ffff) as usize, (e[1] >> 32) as usize);
        for g in 0..q.groups {
            let mut s = 0f32;
            for r in 0..q.rows {
                let qrow = &q.values[(g * q.rows + r) * dim..][..dim];
                let mut best = f32::NEG_INFINITY;
                for tok in 0..len {
                    let trow = &mem.values[first + tok * dim..][..dim];
                    let mut acc = 0f32;
                    for i in 0..nc {
                        for j in 0..2 {
                            for t in 0..4 {
                                for k in 0..4 {
                                    let d = (4 * i + t) * 8 + 4 * j + k;
                                    acc += qrow[d].to_f32() * trow[d].to_f32();
                                }
                            }
                        }
                    }
                    best = best.max(acc);
                }
                s += best;
            }
            partial[g * n_out + out] = s;
        }
    }
    partial
}

#[test]
fn fused_page_table_emulated_equals_exact_maxsim() {
    let dim = 64;
    assert!(kernel_supports(dim) && kernel_supports(128));
    assert!(!kernel_supports(100) && !kernel_supports(256) && !kernel_supports(0));
    let corpus = Corpus::new(3, dim, 16);
    let mut rng = Rng::new(11);
    let lens: Vec<usize> = (0..9)
        .map(|i| [1, 31, 32, 33, 50][i % 5] + rng.below(3) as usize)
        .collect();
    let pages: Vec<Vec<f32>> = lens
        .iter()
        .enumerate()
        .map(|(p, &n)| corpus.page(p as u64, n))
        .collect();
    let (mem, at) = pack(&pages, &lens, dim, 4);
    // One 16-row group, one 32-row group, two 32-row groups.
    for nq in [13, 20, 45] {
        let q = corpus.query(2, nq, nq as u64);
        let padded = pad_query(&q, nq, dim);
        assert_eq!(
            (padded.rows, padded.groups),
            if nq <= 16 {
                (16, 1)
            } else {
                (32, nq.div_ceil(32))
            }
        );
        assert_eq!(padded.values.len(), padded.groups * padded.rows * dim);
        assert!(
            padded.values[nq * dim..].iter().all(|x| x.to_f32() == 0.0),
            "padding rows are zero"
        );
        let qr: Vec<f32> = round_f16(&q);
        let want = |p: usize| maxsim_naive(&qr, nq, dim, &round_f16(&pages[p]), lens[p]);
        // Every page, slot = page; then a subset in another order with gaps (slots stay 0).
        let all: Vec<TableEntry> = at
            .iter()
            .enumerate()
            .map(|(out, &(chunk, row))| TableEntry { chunk, row, out })
            .collect();
        let subset: Vec<(usize, TableEntry)> = [7usize, 2, 5]
            .iter()
            .enumerate()
            .map(|(k, &p)| {
                (
                    p,
                    TableEntry {
                        chunk: at[p].0,
                        row: at[p].1,
                        out: 2 * k + 1,
                    },
                )
            })
            .collect();
        let table = encode(&all, &mem.chunks, dim).unwrap();
        let got = sum_groups(
            &emulate(&table, &mem, &padded, dim, pages.len()),
            padded.groups,
            pages.len(),
        );
        for (p, g) in got.iter().enumerate() {
            let w = want(p);
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "nq {nq} page {p}: {g} vs {w}"
            );
        }
        let entries: Vec<TableEntry> = subset.iter().map(|x| x.1).collect();
        let table = encode(&entries, &mem.chunks, dim).unwrap();
        let got = sum_groups(&emulate(&table, &mem, &padded, dim, 6), padded.groups, 6);
        for (slot, g) in got.iter().enumerate() {
            let w = subset
                .iter()
                .find(|(_, e)| e.out == slot)
                .map_or(0.0, |&(p, _)| want(p));
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "nq {nq} subset slot {slot}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn fused_page_table_refuses_bad_entries() {
    let dim = 128;
    let ok = ChunkAddr {
        base: 4096,
        pages: 3,
        len: 64,
    };
    let e = |chunk, row, out| TableEntry { chunk, row, out };
    let t = encode(&[e(0, 2, 5)], &[ok], dim).unwrap();
    assert_eq!(t, vec![4096 + 2 * 64 * 128 * 2, 64 | 5 << 32]);
    for (chunks, entry, what) in [
        (vec![ok], e(1, 0, 0), "chunk"),
        (vec![ok], e(0, 3, 0), "row"),
        (vec![ChunkAddr { len: 48, ..ok }], e(0, 0, 0), "multiple"),
        (vec![ChunkAddr { len: 0, ..ok }], e(0, 0, 0), "multiple"),
        (vec![ChunkAddr { base: 4100, ..ok }], e(0, 0, 0), "aligned"),
        (vec![ok], e(0, 0, 1 << 33), "slot"),
    ] {
        let err = encode(&[entry], &chunks, dim).unwrap_err().to_string();
        assert!(err.contains(what), "{what}: {err}");
    }
    assert!(encode(&[e(0, 0, 0)], &[ok], 96 + 1).is_err());
    // Group sums add each group's partial scores per slot.
    assert_eq!(
        sum_groups(&[1.0, 2.0, 3.0, 10.0, 20.0, 30.0], 2, 3),
        vec![11.0, 22.0, 33.0]
    );
    assert_eq!(sum_groups(&[1.0, 2.0], 1, 2), vec![1.0, 2.0]);
}
