//! `pagesight search "<query>" ["<query>" …]`: loads the model that made the index once and ranks
//! pages for each query, in order.

use crate::export::results::{render, Format, ResultList};
use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_engine::event::SearchHit;
use pagesight_engine::{Command, EngineHandle, Event, EventEnvelope, SearchMode, SearchRequest};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// What to look for, in natural language; several queries are answered one after another
    /// with the model loaded once.
    #[arg(required_unless_present = "queries_file")]
    pub queries: Vec<String>,
    /// A file of queries, one per line (blank lines and lines starting with # are skipped);
    /// answered after any given as arguments.
    #[arg(long, value_name = "FILE")]
    pub queries_file: Option<PathBuf>,
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
    /// Where the query model and MaxSim run: auto (the GPU when there is one), cpu, cuda:N; or
    /// several cards for an index one card cannot hold: cuda:all (every card, the pages sharded
    /// over them only when the first cannot hold them all), cuda:0,1 (always sharded over the
    /// cards listed). Each card's shard is sized by its free memory; the query model runs on
    /// the first.
    #[arg(long, default_value = "auto")]
    pub device: pagesight_model::device_set::DeviceSet,
    /// Visual MaxSim: exact over every page, or binary (sign-bit prefilter, the best candidates
    /// rescored exactly; binary:N for N candidates).
    #[arg(long, default_value = "exact")]
    pub scorer: pagesight_engine::VisualScorer,
    /// Also write every query's results to FILE: Markdown (.md) or CSV (.csv), by its extension.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Where visual scoring runs: local, or a Qdrant collection the index was exported to,
    /// qdrant://host:port/collection (qdrants:// for TLS). With Qdrant, --index is needed only
    /// for text and hybrid modes (BM25 on the local index, fused as locally).
    #[arg(long, default_value = "local")]
    pub backend: pagesight_engine::SearchBackend,
    /// The Qdrant server's API key, when it has one.
    #[arg(long)]
    pub api_key: Option<String>,
}

pub fn run(a: SearchArgs) -> Result<()> {
    let backend = match a.backend.clone() {
        pagesight_engine::SearchBackend::Qdrant { address, .. } => {
            pagesight_engine::SearchBackend::Qdrant {
                address,
                api_key: a.api_key.clone(),
            }
        }
        local => local,
    };
    let index = match (&a.index, &a.folder, &backend) {
        (Some(i), _, _) => i.clone(),
        (None, Some(f), _) => pagesight_common::paths::default_index_for(f),
        // Qdrant ranks visual searches alone; text and hybrid say they need the index.
        (None, None, pagesight_engine::SearchBackend::Qdrant { .. }) => PathBuf::new(),
        (None, None, _) => bail!("say which index to search: --index DIR or --folder CORPUS"),
    };
    let queries = all_queries(&a)?;
    let export = a
        .export
        .as_ref()
        .map(|p| Format::from_path(p).map(|f| (p.clone(), f)))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut answers: Vec<(String, Vec<SearchHit>)> = Vec::new();
    // The query's terms in a snippet: bold on a terminal, bracketed in a file or a pipe.
    let (open, close) = if std::io::stdout().is_terminal() {
        ("\x1b[1m", "\x1b[0m")
    } else {
        ("[", "]")
    };
    let engine = EngineHandle::spawn();
    // All at once: the search thread answers them in order, the model loaded for the first.
    for (i, query) in queries.iter().enumerate() {
        let mut req = SearchRequest {
            id: i as u64 + 1,
            index: index.clone(),
            query: query.clone(),
            top_k: a.top_k,
            mode: a.mode,
            hybrid_visual_weight: a.hybrid_weight,
            with_heatmaps: a.heatmap,
            device: a.device.primary(),
            devices: None,
            visual_scorer: a.scorer,
            backend: backend.clone(),
        };
        req.set_devices(&a.device);
        engine.send(Command::Search(req));
    }
    let mut answered = 0;
    let mut elapsed = Vec::with_capacity(queries.len());
    for ev in engine.events.iter() {
        match &ev {
            Event::SearchResults {
                hits,
                elapsed_ms,
                note,
                scorer,
                timings,
                query,
                ..
            } => {
                if a.json {
                    println!("{}", EventEnvelope::json_line(&ev));
                } else {
                    if let Some(n) = note.as_ref().filter(|_| answered == 0) {
                        eprintln!("note: {n}");
                    }
                    let load = if timings.model_load_ms >= 1.0 {
                        format!(", model load {:.0} ms", timings.model_load_ms)
                    } else {
                        String::new()
                    };
                    println!(
                        "{} results for \"{query}\" ({elapsed_ms:.1} ms: query {:.1}, scoring {:.1}{load}; {scorer})",
                        hits.len(),
                        timings.embed_ms,
                        timings.score_ms,
                    );
                    for h in hits {
                        println!(
                            "{:>3}. {:>9.4}  {} — page {}",
                            h.rank,
                            h.score,
                            h.file.display(),
                            h.page
                        );
                        if let Some(s) = &h.snippet {
                            println!("{:>16}{}", "", s.marked(open, close));
                        }
                    }
                }
                if export.is_some() {
                    answers.push((query.clone(), hits.clone()));
                }
                elapsed.push(*elapsed_ms - timings.model_load_ms);
                answered += 1;
                if answered == queries.len() {
                    if let Some((path, format)) = &export {
                        write_export(path, *format, a.mode, &answers)?;
                    }
                    if queries.len() > 1 && !a.json {
                        let p50 = pagesight_common::stats::median(std::mem::take(&mut elapsed));
                        eprintln!(
                            "{} queries, median {p50:.1} ms each once the model was loaded",
                            queries.len()
                        );
                    }
                    return Ok(());
                }
            }
            Event::Error {
                message,
                request_id: Some(_),
                context,
            } => bail!("{context}: {message}"),
            Event::Notice { message } => eprintln!("note: {message}"),
            _ => {}
        }
    }
    bail!("the engine stopped unexpectedly")
}

/// Writes every query's results to `path` in one atomic replacement.
fn write_export(
    path: &Path,
    format: Format,
    mode: SearchMode,
    answers: &[(String, Vec<SearchHit>)],
) -> Result<()> {
    let lists: Vec<ResultList<'_>> = answers
        .iter()
        .map(|(query, hits)| ResultList {
            query,
            mode,
            hits: hits.iter().collect(),
        })
        .collect();
    pagesight_common::fs::write_atomic(path, render(format, &lists).as_bytes())
        .with_context(|| format!("exporting the results to {}", path.display()))?;
    eprintln!("results written to {} ({})", path.display(), format.name());
    Ok(())
}

/// The queries given as arguments, then those of `--queries-file`.
fn all_queries(a: &SearchArgs) -> Result<Vec<String>> {
    let mut out = a.queries.clone();
    if let Some(f) = &a.queries_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading the queries file {}", f.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if out.is_empty() {
        bail!("no query to answer: give one as an argument or in --queries-file");
    }
    Ok(out)
}
