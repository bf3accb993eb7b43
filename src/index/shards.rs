//! An index's pages over several devices: the split into contiguous shards, sized by what each
//! device can hold, and the merge of the shards' top-k lists into the global one.
//!
//! The merge is exact: a page among the global best `k` has fewer than `k` pages ahead of it
//! anywhere, so fewer than `k` in its own shard, and is in that shard's top `k`. Ties are
//! broken as on one device (`search::rank_order`: the higher score, then the smaller id).

use super::search::rank_order;
use std::ops::Range;

/// Why the pages cannot be split over the devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SplitError {
    /// The pages need `need` bytes; the devices hold `capacity` between them (or no split of
    /// whole pages fits them).
    TooBig { need: u64, capacity: u64 },
}

/// Contiguous ranges of `page_bytes`' pages, one per device (in order; a range may be empty),
/// sized in proportion to each device's `capacity` and within it. Pages are whole: when the
/// proportional cut leaves a device over its capacity, each device in turn takes all it holds.
pub fn split(page_bytes: &[u64], capacity: &[u64]) -> Result<Vec<Range<usize>>, SplitError> {
    let need: u64 = page_bytes.iter().sum();
    let total: u128 = capacity.iter().map(|&c| c as u128).sum();
    let too_big = SplitError::TooBig {
        need,
        capacity: total.min(u64::MAX as u128) as u64,
    };
    if capacity.is_empty() || need as u128 > total {
        return Err(too_big);
    }
    // Where a device's share ends, in bytes of pages: need × (capacity up to it) / total.
    let proportional = cut(page_bytes, capacity, |cum_cap| {
        (need as u128 * cum_cap / total.max(1)) as u64
    });
    if fits(page_bytes, capacity, &proportional) {
        return Ok(proportional);
    }
    let first_fit = cut(page_bytes, capacity, |_| u64::MAX);
    if fits(page_bytes, capacity, &first_fit) {
        return Ok(first_fit);
    }
    Err(too_big)
}

/// Cuts the pages in order: device d (all but the last) takes pages while its bytes stay within
/// its capacity and the page's middle lies before `end(capacity of devices 0..=d)`, in
/// cumulative bytes; the last device takes the rest.
fn cut(page_bytes: &[u64], capacity: &[u64], end: impl Fn(u128) -> u64) -> Vec<Range<usize>> {
    let mut ranges = Vec::with_capacity(capacity.len());
    let (mut start, mut cum, mut cum_cap) = (0usize, 0u64, 0u128);
    for (d, &cap) in capacity.iter().enumerate() {
        cum_cap += cap as u128;
        if d + 1 == capacity.len() {
            ranges.push(start..page_bytes.len());
            break;
        }
        let target = end(cum_cap);
        let (mut i, mut held) = (start, 0u64);
        while let Some(&b) = page_bytes.get(i) {
            let middle = cum.saturating_add(b / 2);
            if held.saturating_add(b) > cap || middle >= target {
                break;
            }
            held += b;
            cum += b;
            i += 1;
        }
        ranges.push(start..i);
        start = i;
    }
    ranges
}

fn fits(page_bytes: &[u64], capacity: &[u64], ranges: &[Range<usize>]) -> bool {
    ranges
        .iter()
        .zip(capacity)
        .all(|(r, &cap)| page_bytes[r.clone()].iter().sum::<u64>() <= cap)
}

/// The best `k` of the shards' lists together, ordered as one device orders them. Each list
/// holds its shard's best (any order); a page is in one shard only.
pub fn merge_top_k(parts: Vec<Vec<(u64, f32)>>, k: usize) -> Vec<(u64, f32)> {
    let mut all: Vec<(u64, f32)> = parts.into_iter().flatten().collect();
    all.sort_by(rank_order);
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(ranges: &[Range<usize>], pages: &[u64]) -> Vec<u64> {
        ranges
            .iter()
            .map(|r| pages[r.clone()].iter().sum())
            .collect()
    }

    #[test]
    fn equal_capacities_split_evenly_and_cover_every_page_once() {
        let pages = vec![10u64; 101];
        let r = split(&pages, &[u64::MAX / 4, u64::MAX / 4]).unwrap();
        assert_eq!(r, vec![0..50, 50..101]);
        let r = split(&pages, &[1000, 1000, 1000]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, 0);
        assert_eq!(r[2].end, 101);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start), "{r:?}");
        let sizes: Vec<usize> = r.iter().map(|r| r.len()).collect();
        assert!(sizes.iter().all(|&n| (33..=35).contains(&n)), "{sizes:?}");
    }

    #[test]
    fn uneven_capacities_split_in_proportion_within_each() {
        // Pages of mixed sizes: device 0 holds three times what device 1 does.
        let pages: Vec<u64> = (0..400).map(|i| 64 + (i % 5) * 32).collect();
        let need: u64 = pages.iter().sum();
        let caps = [need, need / 3];
        let r = split(&pages, &caps).unwrap();
        let b = bytes(&r, &pages);
        assert!(b[0] <= caps[0] && b[1] <= caps[1], "{b:?}");
        let share = b[0] as f64 / need as f64;
        assert!((share - 0.75).abs() < 0.01, "device 0 holds {share}");
    }

    #[test]
    fn a_proportional_cut_that_overfills_falls_back_to_first_fit() {
        // The proportional share of device 0 ends at byte 11, the middle of the 20-byte page:
        // it goes to device 1, which cannot hold it; device 0 can hold both pages.
        assert_eq!(split(&[1, 20], &[21, 19]).unwrap(), vec![0..2, 2..2]);
        // Three pages of 10 over 15 + 15: the bytes would fit, whole pages do not.
        assert_eq!(
            split(&[10, 10, 10], &[15, 15]),
            Err(SplitError::TooBig {
                need: 30,
                capacity: 30
            })
        );
    }

    #[test]
    fn too_big_and_degenerate_inputs() {
        assert_eq!(
            split(&[10, 10], &[5, 5]),
            Err(SplitError::TooBig {
                need: 20,
                capacity: 10
            })
        );
        assert!(split(&[1], &[]).is_err());
        // No pages: every range empty.
        assert_eq!(split(&[], &[10, 10]).unwrap(), vec![0..0, 0..0]);
        // Fewer pages than devices: some shard is empty, none overlaps.
        let r = split(&[10], &[100, 100, 100]).unwrap();
        assert_eq!(r.iter().map(|r| r.len()).sum::<usize>(), 1, "{r:?}");
        // A device with no room takes nothing.
        assert_eq!(split(&[10, 10], &[0, 100]).unwrap(), vec![0..0, 0..2]);
    }

    #[test]
    fn merge_breaks_ties_by_the_smaller_id_across_shards() {
        let a = vec![(7, 0.5), (2, 0.9)];
        let b = vec![(3, 0.5), (9, 0.9), (1, 0.1)];
        assert_eq!(
            merge_top_k(vec![a, b], 4),
            vec![(2, 0.9), (9, 0.9), (3, 0.5), (7, 0.5)]
        );
    }

    #[test]
    fn merge_with_k_larger_than_a_shard_and_an_empty_shard() {
        let parts = vec![vec![(4, 1.0)], vec![], vec![(5, 2.0), (6, -1.0)]];
        assert_eq!(
            merge_top_k(parts.clone(), 10),
            vec![(5, 2.0), (4, 1.0), (6, -1.0)]
        );
        assert_eq!(merge_top_k(parts, 1), vec![(5, 2.0)]);
        assert!(merge_top_k(vec![vec![], vec![]], 3).is_empty());
        assert!(merge_top_k(vec![vec![(1, 1.0)]], 0).is_empty());
    }

    #[test]
    fn merged_shard_top_ks_equal_the_top_k_of_everything() {
        // Scores from a small set so that many tie, over shards of uneven sizes.
        let scored: Vec<(u64, f32)> = (0..3000u64)
            .map(|i| ((i * 2654435761) % 100_003, ((i * 7919) % 11) as f32 * 0.5))
            .collect();
        let mut want = scored.clone();
        want.sort_by(rank_order);
        for k in [1, 5, 100, 5000] {
            let mut expected = want.clone();
            expected.truncate(k);
            let shards = [0..10, 10..10, 10..1700, 1700..3000];
            let parts = shards
                .iter()
                .map(|r| {
                    let mut s = scored[r.clone()].to_vec();
                    s.sort_by(rank_order);
                    s.truncate(k);
                    s
                })
                .collect();
            assert_eq!(merge_top_k(parts, k), expected, "k = {k}");
        }
    }
}
