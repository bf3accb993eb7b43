//! Hierarchical token pooling at ingest: the image vectors of a page are clustered (Ward linkage,
//! nearest-neighbour-chain, O(n²)) into `ceil(n / factor)` groups, each replaced by its mean.
//! Each pooled vector keeps its patch members so heatmaps still map to the merged-patch grid.

use std::ops::Range;

pub struct Pooled {
    pub vectors: Vec<f32>,
    pub n_tokens: usize,
    pub image_rows: Range<usize>,
    /// Per pooled image vector, the patch indices (0-based within the image rows) it covers.
    pub members: Vec<Vec<u32>>,
}

/// Pools the rows in `image_rows` of `vectors` (`n × dim`); other rows pass through unchanged.
pub fn pool_rows(vectors: &[f32], dim: usize, image_rows: Range<usize>, factor: usize) -> Pooled {
    let img = &vectors[image_rows.start * dim..image_rows.end * dim];
    let n = image_rows.len();
    let k = n.div_ceil(factor.max(1)).max(1);
    let mut groups = cluster(img, n, dim, k);
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.sort_by_key(|g| g[0]);
    let mut out = Vec::with_capacity(vectors.len());
    out.extend_from_slice(&vectors[..image_rows.start * dim]);
    for g in &groups {
        let mut mean = vec![0f32; dim];
        for &m in g {
            for (a, &x) in mean
                .iter_mut()
                .zip(&img[m as usize * dim..(m as usize + 1) * dim])
            {
                *a += x;
            }
        }
        mean.iter_mut().for_each(|a| *a /= g.len() as f32);
        out.extend_from_slice(&mean);
    }
    out.extend_from_slice(&vectors[image_rows.end * dim..]);
    let n_tokens = out.len() / dim;
    Pooled {
        vectors: out,
        n_tokens,
        image_rows: image_rows.start..image_rows.start + groups.len(),
        members: groups,
    }
}

/// Ward clustering of `n` rows into `k` groups.
fn cluster(x: &[f32], n: usize, dim: usize, k: usize) -> Vec<Vec<u32>> {
    if k >= n {
        return (0..n as u32).map(|i| vec![i]).collect();
    }
    // Squared Euclidean distances; Ward's Lance–Williams update keeps them as Ward costs.
    let mut d = vec![0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let s: f32 = x[i * dim..(i + 1) * dim]
                .iter()
                .zip(&x[j * dim..(j + 1) * dim])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            d[i * n + j] = s;
            d[j * n + i] = s;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut merges: Vec<(f32, usize, usize)> = Vec::with_capacity(n - 1);
    let mut chain: Vec<usize> = Vec::new();
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|&a| a).unwrap_or(0));
        }
        let a = chain[chain.len() - 1];
        let prev = if chain.len() >= 2 {
            Some(chain[chain.len() - 2])
        } else {
            None
        };
        let mut best = prev.unwrap_or(usize::MAX);
        let mut best_d = prev.map(|p| d[a * n + p]).unwrap_or(f32::INFINITY);
        for j in 0..n {
            if active[j] && j != a && d[a * n + j] < best_d {
                best = j;
                best_d = d[a * n + j];
            }
        }
        if Some(best) == prev {
            chain.pop();
            chain.pop();
            let b = best;
            merges.push((best_d, a.min(b), a.max(b)));
            let (keep, drop) = (a.min(b), a.max(b));
            let (sa, sb) = (size[a] as f32, size[b] as f32);
            for j in 0..n {
                if active[j] && j != a && j != b {
                    let sj = size[j] as f32;
                    let v = ((sa + sj) * d[a * n + j] + (sb + sj) * d[b * n + j] - sj * best_d)
                        / (sa + sb + sj);
                    d[keep * n + j] = v;
                    d[j * n + keep] = v;
                }
            }
            size[keep] += size[drop];
            active[drop] = false;
            remaining -= 1;
        } else {
            chain.push(best);
        }
    }
    // Ward is reducible: applying the n − k cheapest merges gives the k-cluster cut. Each merge
    // record names the cluster by the surviving index, so replay them in cost order.
    merges.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for &(_, a, b) in merges.iter().take(n - k) {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        parent[rb] = ra;
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<u32>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i as u32);
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pools_to_the_requested_count_and_keeps_every_patch_once() {
        let dim = 4;
        let n = 30;
        let x: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let p = super::pool_rows(&x, dim, 2..26, 3);
        assert_eq!(p.members.len(), 8);
        assert_eq!(p.n_tokens, 2 + 8 + 4);
        let mut all: Vec<u32> = p.members.concat();
        all.sort();
        assert_eq!(all, (0..24).collect::<Vec<u32>>());
        assert_eq!(&p.vectors[..2 * dim], &x[..2 * dim]);
    }

    #[test]
    fn identical_rows_cluster_together() {
        let dim = 2;
        let x = vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        let p = super::pool_rows(&x, dim, 0..4, 2);
        assert_eq!(p.members, vec![vec![0, 2], vec![1, 3]]);
    }
}
