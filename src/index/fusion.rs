//! Reciprocal rank fusion of the visual and text rankings.

use std::collections::HashMap;

/// Conventional RRF constant: damps the head of each list.
pub const RRF_K: f32 = 60.0;

/// Fuses two rankings (best first) into one: `score = w/(k+rank_v) + (1−w)/(k+rank_t)`, rank
/// 1-based, a missing rank contributing nothing. `visual_weight` in [0, 1].
pub fn rrf(visual: &[u64], text: &[u64], visual_weight: f32) -> Vec<(u64, f32)> {
    let w = visual_weight.clamp(0.0, 1.0);
    let mut scores: HashMap<u64, f32> = HashMap::new();
    for (list, weight) in [(visual, w), (text, 1.0 - w)] {
        for (r, &id) in list.iter().enumerate() {
            *scores.entry(id).or_default() += weight / (RRF_K + r as f32 + 1.0);
        }
    }
    let mut out: Vec<(u64, f32)> = scores.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn agreement_wins_and_weight_tilts() {
        let f = super::rrf(&[1, 2, 3], &[3, 4, 1], 0.5);
        assert_eq!(f[0].0, 1);
        let v = super::rrf(&[5, 6], &[6, 5], 1.0);
        assert_eq!(v[0].0, 5);
        let t = super::rrf(&[5, 6], &[6, 5], 0.0);
        assert_eq!(t[0].0, 6);
    }
}
