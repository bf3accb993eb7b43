//! Where a search's time went, said for the results line's tooltip.

/// "query 8.1 ms · scoring 3.0 ms · …": the steps that took time, for the results line's tooltip.
pub fn time_by_step(t: &pagesight_engine::event::SearchTimings) -> String {
    let steps = [
        ("opening the index", t.open_ms),
        ("loading the query model", t.model_load_ms),
        ("embedding the query", t.embed_ms),
        ("GPU page tiles", t.tiles_ms),
        ("scoring", t.score_ms),
        ("heatmaps", t.heatmap_ms),
    ];
    let parts: Vec<String> = steps
        .iter()
        .filter(|(_, ms)| *ms >= 0.05)
        .map(|(what, ms)| format!("{what} {ms:.1} ms"))
        .collect();
    if parts.is_empty() {
        "no step took measurable time".into()
    } else {
        parts.join(" · ")
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn the_tooltip_names_the_steps_that_took_time() {
        let t = pagesight_engine::event::SearchTimings {
            embed_ms: 8.14,
            score_ms: 3.0,
            model_load_ms: 0.001,
            ..Default::default()
        };
        assert_eq!(
            time_by_step(&t),
            "embedding the query 8.1 ms · scoring 3.0 ms"
        );
        assert_eq!(
            time_by_step(&Default::default()),
            "no step took measurable time"
        );
    }
}
