//! `pagesight search "<query>"`: loads the model that made the index by itself and ranks pages.

use anyhow::{bail, Result};
use clap::Args;
use pagesight_engine::{Command, EngineHandle, Event, EventEnvelope, SearchMode, SearchRequest};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// What to look for, in natural language.
    pub query: String,
    /// Index folder.
    #[arg(long, conflicts_with = "folder")]
    pub index: Option<PathBuf>,
    /// The corpus folder whose default index to search.
    #[arg(long)]
    pub folder: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// visual, text or hybrid.
    #[arg(long, default_value = "visual")]
    pub mode: SearchMode,
    /// Weight of the visual ranking in hybrid mode (text gets 1 − w).
    #[arg(long, default_value_t = 0.5)]
    pub hybrid_weight: f32,
    /// Print the per-patch heatmap of each hit (JSON output only).
    #[arg(long)]
    pub heatmap: bool,
    #[arg(long)]
    pub json: bool,
    /// Where the query model and MaxSim run: auto (the GPU when there is one), cpu, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: pagesight_model::settings::DeviceChoice,
    /// Visual MaxSim: exact over every page, or binary (sign-bit prefilter, the best candidates
    /// rescored exactly; binary:N for N candidates).
    #[arg(long, default_value = "exact")]
    pub scorer: pagesight_engine::VisualScorer,
}

pub fn run(a: SearchArgs) -> Result<()> {
    let index = match (&a.index, &a.folder) {
        (Some(i), _) => i.clone(),
        (None, Some(f)) => pagesight_common::paths::default_index_for(f),
        (None, None) => bail!("say which index to search: --index DIR or --folder CORPUS"),
    };
    let engine = EngineHandle::spawn();
    engine.send(Command::Search(SearchRequest {
        id: 1,
        index,
        query: a.query.clone(),
        top_k: a.top_k,
        mode: a.mode,
        hybrid_visual_weight: a.hybrid_weight,
        with_heatmaps: a.heatmap,
        device: a.device,
        visual_scorer: a.scorer,
    }));
    for ev in engine.events.iter() {
        match &ev {
            Event::SearchResults {
                hits,
                elapsed_ms,
                note,
                scorer,
                ..
            } => {
                if a.json {
                    println!("{}", EventEnvelope::json_line(&ev));
                } else {
                    if let Some(n) = note {
                        eprintln!("note: {n}");
                    }
                    println!(
                        "{} results for \"{}\" ({:.1} ms; {scorer})",
                        hits.len(),
                        a.query,
                        elapsed_ms
                    );
                    for h in hits {
                        println!(
                            "{:>3}. {:>9.4}  {} — page {}",
                            h.rank,
                            h.score,
                            h.file.display(),
                            h.page
                        );
                    }
                }
                return Ok(());
            }
            Event::Error {
                message,
                request_id: Some(1),
                context,
            } => bail!("{context}: {message}"),
            Event::Notice { message } => eprintln!("note: {message}"),
            _ => {}
        }
    }
    bail!("the engine stopped unexpectedly")
}
