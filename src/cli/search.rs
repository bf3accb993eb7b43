//! `pagesight search "<query>" ["<query>" …]`: loads the model that made the index once and ranks
//! pages for each query, in order. Several indexes (`--index A --index B`, `--folder`) are searched
//! as one library: each answers on its own and the answers merge as in the app
//! (`pagesight_engine::library_search`).

use crate::export::results::{render, Format, ResultList};
use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_engine::event::SearchHit;
use pagesight_engine::library_search::gather::{Answer, Gather, Gathered, Searched};
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
    /// Index folder; repeat it (or add --folder) to search several indexes as one library:
    /// visual scores of indexes made with the same model merge by score, text and hybrid answers
    /// by reciprocal rank, and indexes made with another model are listed apart.
    #[arg(long = "index", value_name = "DIR")]
    pub indexes: Vec<PathBuf>,
    /// A corpus folder whose default index to search (may be repeated).
    #[arg(long = "folder", value_name = "DIR")]
    pub folders: Vec<PathBuf>,
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
    /// rescored exactly; binary:N for N candidates). With a Qdrant backend, binary scans the
    /// collection's binary-quantised copies on the server and rescores there.
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
    let targets = targets(&a, &backend)?;
    let queries = all_queries(&a)?;
    let export = a
        .export
        .as_ref()
        .map(|p| Format::from_path(p).map(|f| (p.clone(), f)))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let mut answers: Vec<(String, Vec<SearchHit>)> = Vec::new();
    let engine = EngineHandle::spawn();
    // All at once: the search thread answers them in order, the model loaded for the first.
    let n = targets.len();
    let request_id = |query: usize, target: usize| (query * n + target) as u64 + 1;
    let mut gathers: Vec<Option<Gather>> = Vec::with_capacity(queries.len());
    for (i, query) in queries.iter().enumerate() {
        let mut gather = Gather::new(i as u64, query, a.mode, a.top_k);
        for (j, t) in targets.iter().enumerate() {
            gather.asked(
                request_id(i, j),
                Searched {
                    corpus: t.label.clone(),
                    provenance: t.provenance.clone(),
                },
            );
            let mut req = SearchRequest {
                id: request_id(i, j),
                index: t.index.clone(),
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
        gathers.push(Some(gather));
    }
    let printer = Printer::new(&a, n);
    let mut answered = 0;
    let mut elapsed = Vec::with_capacity(queries.len());
    for ev in engine.events.iter() {
        let (id, answer) = match &ev {
            Event::SearchResults {
                id,
                hits,
                elapsed_ms,
                note,
                scorer,
                timings,
                ..
            } => {
                // One index: its answer as it comes, the event itself on --json.
                if n == 1 && a.json {
                    println!("{}", EventEnvelope::json_line(&ev));
                }
                let answer = Answer {
                    hits: hits.clone(),
                    elapsed_ms: *elapsed_ms,
                    note: note.clone(),
                    scorer: scorer.clone(),
                    timings: *timings,
                };
                (*id, Ok(answer))
            }
            Event::Error {
                message,
                request_id: Some(id),
                context,
            } => {
                // One index failing fails the search; among several, its failure is a note.
                if n == 1 {
                    bail!("{context}: {message}");
                }
                (*id, Err(format!("{context}: {message}")))
            }
            Event::Notice { message } => {
                eprintln!("note: {message}");
                continue;
            }
            _ => continue,
        };
        let query = (id.saturating_sub(1) / n as u64) as usize;
        let Some(slot) = gathers.get_mut(query) else {
            continue;
        };
        let done = slot.as_mut().is_some_and(|g| g.answer(id, answer));
        if !done {
            continue;
        }
        let Some(gather) = slot.take() else { continue };
        let query_text = gather.query.clone();
        let merged = gather.finish();
        if let Some(why) = &merged.all_failed {
            bail!("{why}");
        }
        printer.print(&query_text, &merged, answered == 0);
        if export.is_some() {
            answers.push((query_text, all_hits(&merged)));
        }
        elapsed.push(merged.elapsed_ms - merged.timings.model_load_ms);
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
    bail!("the engine stopped unexpectedly")
}

/// One index to search: how the output names it and what made its vectors.
struct Target {
    label: String,
    index: PathBuf,
    provenance: Option<pagesight_index::Provenance>,
}

/// The indexes named by `--index` and `--folder`, in that order; none is an error except for a
/// Qdrant search (the collection ranks visual searches alone; text and hybrid then say they need
/// the index).
fn targets(a: &SearchArgs, backend: &pagesight_engine::SearchBackend) -> Result<Vec<Target>> {
    let mut dirs: Vec<PathBuf> = a.indexes.clone();
    dirs.extend(
        a.folders
            .iter()
            .map(|f| pagesight_common::paths::default_index_for(f)),
    );
    if dirs.is_empty() {
        if let pagesight_engine::SearchBackend::Qdrant { .. } = backend {
            return Ok(vec![Target {
                label: String::new(),
                index: PathBuf::new(),
                provenance: None,
            }]);
        }
        bail!("say which index to search: --index DIR or --folder CORPUS (either may be repeated)");
    }
    let mut unique: Vec<PathBuf> = Vec::with_capacity(dirs.len());
    for index in dirs {
        if !unique.contains(&index) {
            unique.push(index);
        }
    }
    // Provenance only groups the answers of several indexes: one index needs no manifest read
    // here. One that cannot be read is left to the engine, whose error names it.
    let several = unique.len() > 1;
    let out = unique
        .into_iter()
        .map(|index| Target {
            label: index.display().to_string(),
            provenance: several
                .then(|| pagesight_index::Index::provenance_at(&index).ok().flatten())
                .flatten(),
            index,
        })
        .collect();
    Ok(out)
}

/// Every group's hits, the first model's first (what an export of a library search holds).
fn all_hits(merged: &Gathered) -> Vec<SearchHit> {
    merged
        .groups
        .iter()
        .flat_map(|g| g.hits.iter().map(|(_, h)| h.clone()))
        .collect()
}

/// How a query's answer is shown: the terminal's lines, or one JSON line per query for a
/// library search (one index's answers go out as the engine's own events).
struct Printer {
    json: bool,
    several: bool,
    /// The query's terms in a snippet: bold on a terminal, bracketed in a file or a pipe.
    mark: (&'static str, &'static str),
}

impl Printer {
    fn new(a: &SearchArgs, indexes: usize) -> Printer {
        let mark = if std::io::stdout().is_terminal() {
            ("\x1b[1m", "\x1b[0m")
        } else {
            ("[", "]")
        };
        Printer {
            json: a.json,
            several: indexes > 1,
            mark,
        }
    }

    fn print(&self, query: &str, m: &Gathered, first: bool) {
        if self.json {
            if self.several {
                println!("{}", library_json(query, m));
            }
            return;
        }
        if let Some(n) = m.note.as_ref().filter(|_| first || self.several) {
            eprintln!("note: {n}");
        }
        let t = &m.timings;
        let load = if t.model_load_ms >= 1.0 {
            format!(", model load {:.0} ms", t.model_load_ms)
        } else {
            String::new()
        };
        let hits: usize = m.groups.iter().map(|g| g.hits.len()).sum();
        println!(
            "{hits} results for \"{query}\" ({:.1} ms: query {:.1}, scoring {:.1}{load}; {})",
            m.elapsed_ms, t.embed_ms, t.score_ms, m.scorer
        );
        for (i, group) in m.groups.iter().enumerate() {
            if i > 0 {
                println!(
                    "— made with another model ({}); scores not comparable —",
                    group.model
                );
            }
            for (corpus, h) in &group.hits {
                let from = if self.several {
                    format!("  [{corpus}]")
                } else {
                    String::new()
                };
                println!(
                    "{:>3}. {:>9.4}  {} — page {}{from}",
                    h.rank,
                    h.score,
                    h.file.display(),
                    h.page
                );
                if let Some(s) = &h.snippet {
                    println!("{:>16}{}", "", s.marked(self.mark.0, self.mark.1));
                }
            }
        }
    }
}

/// A library search's answer to one query as one JSON object: its groups (one per model) of
/// hits, each hit with the index it came from.
fn library_json(query: &str, m: &Gathered) -> String {
    let groups: Vec<serde_json::Value> = m
        .groups
        .iter()
        .map(|g| {
            let hits: Vec<serde_json::Value> = g
                .hits
                .iter()
                .map(|(index, h)| {
                    // Through the text form: `to_value` widens the f32 score to f64 digits
                    // (2.966883420944214), the text form keeps the f32's own (2.9668834), as a
                    // one-index search prints it.
                    let mut v: serde_json::Value = serde_json::to_string(h)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("index".into(), index.clone().into());
                    }
                    v
                })
                .collect();
            serde_json::json!({ "model": g.model, "hits": hits })
        })
        .collect();
    serde_json::json!({
        "query": query,
        "groups": groups,
        "elapsed_ms": m.elapsed_ms,
        "scorer": m.scorer,
        "note": m.note,
    })
    .to_string()
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
