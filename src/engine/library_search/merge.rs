//! One ranked list out of several corpora's answers to the same query.
//!
//! Corpora whose vectors were made by the same model (as `Provenance::check_compatible` judges:
//! same checkpoint, adapter, precision, quantisation, page budget and query prompt) embed the
//! query identically, so their visual MaxSim scores are on one scale and merge by score. BM25
//! scores depend on each index's term statistics, and hybrid scores are already fused ranks, so
//! text and hybrid answers merge by reciprocal rank fusion. A corpus made by another model scores
//! on another scale: its hits form a group of their own, listed after the first one.

use crate::event::SearchHit;
use crate::SearchMode;
use pagesight_index::Provenance;

/// The usual RRF constant: damps the weight of the very first ranks.
const RRF_K: f32 = 60.0;

/// One corpus's answer.
pub struct CorpusAnswer {
    pub corpus: String,
    /// What made its vectors (None: not known yet; such a corpus is grouped alone).
    pub provenance: Option<Provenance>,
    pub hits: Vec<SearchHit>,
}

/// Hits of corpora made with one model, ranked together.
#[derive(Clone, Debug, PartialEq)]
pub struct HitGroup {
    /// The model that made these corpora's vectors.
    pub model: String,
    /// Each hit with the corpus it came from; ranks start at 1 in each group.
    pub hits: Vec<(String, SearchHit)>,
}

/// Merges `answers` (in the library's order) into groups of comparable scores, the group of the
/// first answer first, each cut to `top_k`.
pub fn merge(answers: Vec<CorpusAnswer>, mode: SearchMode, top_k: usize) -> Vec<HitGroup> {
    let mut groups: Vec<(Option<Provenance>, Vec<CorpusAnswer>)> = Vec::new();
    for a in answers {
        let fits = groups
            .iter_mut()
            .find(|(p, _)| same_model(p, &a.provenance));
        match fits {
            Some((_, members)) => members.push(a),
            None => groups.push((a.provenance.clone(), vec![a])),
        }
    }
    groups
        .into_iter()
        .map(|(prov, members)| HitGroup {
            model: prov.map_or_else(|| "model not known yet".into(), |p| p.model),
            hits: rank_group(members, mode, top_k),
        })
        .collect()
}

/// Whether two corpora's scores are on one scale.
fn same_model(a: &Option<Provenance>, b: &Option<Provenance>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.check_compatible(b, std::path::Path::new("")).is_ok(),
        _ => false,
    }
}

fn rank_group(
    members: Vec<CorpusAnswer>,
    mode: SearchMode,
    top_k: usize,
) -> Vec<(String, SearchHit)> {
    let several = members.len() > 1;
    let mut hits: Vec<(String, SearchHit)> = members
        .into_iter()
        .flat_map(|a| {
            let corpus = a.corpus;
            a.hits.into_iter().map(move |h| (corpus.clone(), h))
        })
        .collect();
    if several {
        if mode != SearchMode::Visual {
            for (_, h) in &mut hits {
                h.score = 1.0 / (RRF_K + h.rank as f32);
            }
        }
        // Stable: equal scores keep the library's order.
        hits.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    }
    hits.truncate(top_k);
    for (i, (_, h)) in hits.iter_mut().enumerate() {
        h.rank = i + 1;
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov(model: &str) -> Provenance {
        Provenance {
            model: model.into(),
            adapter: None,
            checkpoint_hash: format!("hash-of-{model}"),
            quant: "none".into(),
            quant_scope: "all".into(),
            dtype: "f32".into(),
            lora: None,
            compute: None,
            max_visual_tokens: 768,
            query_prompt: "Query: ".into(),
            dim: 128,
            random_weights: false,
        }
    }

    fn hits(file: &str, scores: &[f32]) -> Vec<SearchHit> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &score)| SearchHit {
                rank: i + 1,
                score,
                file: format!("/{file}.pdf").into(),
                page: i as u32 + 1,
                title: None,
                heatmap: None,
                snippet: None,
            })
            .collect()
    }

    fn answer(corpus: &str, model: Option<&str>, scores: &[f32]) -> CorpusAnswer {
        CorpusAnswer {
            corpus: corpus.into(),
            provenance: model.map(prov),
            hits: hits(corpus, scores),
        }
    }

    fn order(g: &HitGroup) -> Vec<(String, u32, usize)> {
        g.hits
            .iter()
            .map(|(c, h)| (c.clone(), h.page, h.rank))
            .collect()
    }

    #[test]
    fn visual_scores_of_one_model_interleave_by_score() {
        let groups = merge(
            vec![
                answer("thesis", Some("m"), &[9.0, 5.0, 1.0]),
                answer("papers", Some("m"), &[7.0, 6.0]),
            ],
            SearchMode::Visual,
            4,
        );
        assert_eq!(groups.len(), 1);
        assert_eq!(
            order(&groups[0]),
            [
                ("thesis".into(), 1, 1),
                ("papers".into(), 1, 2),
                ("papers".into(), 2, 3),
                ("thesis".into(), 2, 4),
            ]
        );
        assert_eq!(groups[0].hits[1].1.score, 7.0, "visual scores are kept");
    }

    #[test]
    fn text_and_hybrid_merge_by_reciprocal_rank() {
        // BM25 scores of two indexes are on different scales: the raw scores would put every
        // hit of "papers" first; by rank, the two first hits come first.
        for mode in [SearchMode::Text, SearchMode::Hybrid] {
            let groups = merge(
                vec![
                    answer("thesis", Some("m"), &[3.0, 2.0]),
                    answer("papers", Some("m"), &[40.0, 30.0]),
                ],
                mode,
                10,
            );
            assert_eq!(
                order(&groups[0]),
                [
                    ("thesis".into(), 1, 1),
                    ("papers".into(), 1, 2),
                    ("thesis".into(), 2, 3),
                    ("papers".into(), 2, 4),
                ]
            );
            assert!((groups[0].hits[0].1.score - 1.0 / 61.0).abs() < 1e-6);
        }
    }

    #[test]
    fn corpora_of_another_model_are_listed_apart() {
        let groups = merge(
            vec![
                answer("thesis", Some("m"), &[0.5]),
                answer("scans", Some("other"), &[30.0, 20.0]),
                answer("papers", Some("m"), &[0.7]),
                answer("new", None, &[1.0]),
            ],
            SearchMode::Visual,
            10,
        );
        let models: Vec<&str> = groups.iter().map(|g| g.model.as_str()).collect();
        assert_eq!(models, ["m", "other", "model not known yet"]);
        assert_eq!(
            order(&groups[0]),
            [("papers".into(), 1, 1), ("thesis".into(), 1, 2)]
        );
        assert_eq!(
            order(&groups[1]),
            [("scans".into(), 1, 1), ("scans".into(), 2, 2)]
        );
    }

    #[test]
    fn one_corpus_is_passed_through_cut_to_top_k() {
        let groups = merge(
            vec![answer("thesis", Some("m"), &[3.0, 2.0, 1.0])],
            SearchMode::Text,
            2,
        );
        assert_eq!(groups[0].hits.len(), 2);
        assert_eq!(
            groups[0].hits[1].1.score, 2.0,
            "a lone corpus keeps its scores"
        );
    }
}
