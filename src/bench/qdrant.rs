//! `bench qdrant`: the index served by Qdrant next to the local scorers, on the same synthetic
//! pages (`bench search`'s corpus and index): export throughput into a fresh collection, then
//! search latency through Qdrant (exact MAX_SIM over the f16 multivectors, one gRPC round trip
//! per query) and locally (exact, and the binary prefilter with its default candidate count),
//! and how far each top 10 agrees with the local exact one. Queries are vectors drawn by the
//! corpus (no model), so the figures compare scoring and transport only.

use super::search_synthetic::{build_with, CORPUS_VERSION};
use super::search_timing::{
    latency_line, overlap_at_10, tie_agreement, time_queries, top10, ExactScores, Latency,
};
use anyhow::{Context, Result};
use clap::Args;
use pagesight_index::search::CpuExact;
use pagesight_index::synthetic::Corpus;
use pagesight_index::{Index, Provenance, Query, Scorer, Searcher};
use pagesight_qdrant::point::point_id;
use pagesight_qdrant::{ExportOptions, RemoteCollection, RemoteScoring, RetryPolicy, Server};
use serde::Serialize;
use std::ops::ControlFlow;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct QdrantBenchArgs {
    /// The Qdrant server's gRPC address (e.g. the URL `../shared/qdrant/start.sh` prints).
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub api_key: Option<String>,
    /// Index sizes in pages.
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    pub pages: Vec<usize>,
    #[command(flatten)]
    pub synthetic: super::search_synthetic::SyntheticCorpusArgs,
    #[arg(long, default_value_t = ExportOptions::default().batch_pages)]
    pub batch_pages: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Serialize, Debug)]
pub struct QdrantBenchRun {
    pub pages: usize,
    pub export_seconds: f64,
    pub export_pages_per_s: f64,
    /// f32 vector bytes sent per second (what goes over gRPC).
    pub export_mb_per_s: f64,
    pub qdrant: Latency,
    /// Qdrant's binary-quantised scan with the same candidate count rescored exactly.
    pub qdrant_binary: Latency,
    pub qdrant_binary_top10_vs_exact: f64,
    pub local_exact: Latency,
    pub local_binary: Latency,
    pub binary_candidates: usize,
    pub qdrant_top10_vs_exact: f64,
    pub binary_top10_vs_exact: f64,
    /// Shares of queries whose top-10 is the local exact one up to ties (a page scoring, exactly,
    /// within 1e-3 relative of the 10th best counts as equal), for Qdrant exact, Qdrant binary
    /// and local binary.
    pub qdrant_top10_equal_up_to_ties: f64,
    pub qdrant_binary_top10_equal_up_to_ties: f64,
    pub binary_top10_equal_up_to_ties: f64,
}

pub fn run(a: QdrantBenchArgs) -> Result<()> {
    let corpus = Corpus::new(42, a.synthetic.dim, 1024);
    let server = Server::connect(&a.url, a.api_key.as_deref(), RetryPolicy::default())?;
    eprintln!(
        "Qdrant at {} and this process share the machine's {} cores: on a small box the figures \
         measure contention as much as either side",
        server.url(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let mut runs = Vec::new();
    for &n in &a.pages {
        let dir = a
            .synthetic
            .work_dir
            .join(format!("pages-{n}-v{CORPUS_VERSION}"));
        build_with(
            a.synthetic.tokens,
            &corpus,
            n,
            &dir,
            false,
            &Provenance::synthetic(a.synthetic.dim),
        )
        .with_context(|| format!("building {}", dir.display()))?;
        let collection = format!("bench-{n}-{}", a.synthetic.tokens);
        // A full export each run: delete what an earlier run left.
        let _ = pagesight_qdrant::collection::delete(&server, &collection);
        let opts = ExportOptions {
            batch_pages: a.batch_pages.max(1),
            ..Default::default()
        };
        let report = pagesight_qdrant::export(&dir, &server, &collection, &opts, &mut |_| {
            ControlFlow::Continue(())
        })?;
        let remote = RemoteCollection::open(
            Server::connect(&a.url, a.api_key.as_deref(), RetryPolicy::default())?,
            &collection,
        )?;
        let s = Index::open(&dir)?.searcher()?;
        let queries = super::search_synthetic::synthetic_queries(
            &corpus,
            n,
            a.synthetic.queries,
            a.synthetic.query_tokens,
        );
        let isa = pagesight_index::maxsim::detected_isa();
        let as_points = |ids: Vec<u64>| -> Result<Vec<u64>> { to_points(&s, ids) };
        let (exact, exact_tops, _) =
            time_queries(&queries, |q| as_points(top10(&s, q, &CpuExact(isa))?))?;
        let binary = Scorer::binary_for_pages(n);
        let candidates = match binary {
            Scorer::Binary { candidates } => candidates,
            Scorer::Exact => 0,
        };
        let (local_binary, binary_tops, _) = time_queries(&queries, |q| {
            let q = Query {
                scorer: binary,
                ..q.clone()
            };
            as_points(
                s.visual_with(&q, 10, &CpuExact(isa))?
                    .into_iter()
                    .map(|x| x.0)
                    .collect(),
            )
        })?;
        let remote_tops = |scoring: RemoteScoring| {
            time_queries(&queries, |q| {
                Ok(remote
                    .search_scored(&q.vectors, q.n_tokens, 10, scoring)?
                    .into_iter()
                    .map(|h| h.point_id)
                    .collect())
            })
        };
        let exact_scores = exact_scores_by_point(&s, &queries, n, &CpuExact(isa))?;
        let (qdrant, qdrant_tops, _) = remote_tops(RemoteScoring::Exact)?;
        let (qdrant_binary, qdrant_binary_tops, _) =
            remote_tops(RemoteScoring::BinaryRescored { candidates })?;
        let vector_bytes = (n * a.synthetic.tokens * a.synthetic.dim * 4) as f64;
        let run = QdrantBenchRun {
            pages: n,
            export_seconds: report.seconds,
            export_pages_per_s: report.sent as f64 / report.seconds,
            export_mb_per_s: vector_bytes / report.seconds / 1e6,
            qdrant,
            qdrant_binary,
            qdrant_binary_top10_vs_exact: overlap_at_10(&exact_tops, &qdrant_binary_tops),
            local_exact: exact,
            local_binary,
            binary_candidates: candidates,
            qdrant_top10_vs_exact: overlap_at_10(&exact_tops, &qdrant_tops),
            binary_top10_vs_exact: overlap_at_10(&exact_tops, &binary_tops),
            qdrant_top10_equal_up_to_ties: tie_agreement(&qdrant_tops, &exact_scores),
            qdrant_binary_top10_equal_up_to_ties: tie_agreement(&qdrant_binary_tops, &exact_scores),
            binary_top10_equal_up_to_ties: tie_agreement(&binary_tops, &exact_scores),
        };
        println!(
            "{n} pages × {} vectors × {} dims, {} query vectors, {} queries",
            a.synthetic.tokens, a.synthetic.dim, a.synthetic.query_tokens, a.synthetic.queries
        );
        println!(
            "  export to Qdrant   {:.1} s, {:.1} pages/s, {:.1} MB/s of f32 vectors ({} batches of ≤ {} pages, {} retries)",
            run.export_seconds, run.export_pages_per_s, run.export_mb_per_s, report.batches, opts.batch_pages, report.retries
        );
        println!(
            "  search  Qdrant exact MAX_SIM     {}  top-10 vs local exact {:.3} (equal up to ties {:.3})",
            latency_line(&run.qdrant),
            run.qdrant_top10_vs_exact,
            run.qdrant_top10_equal_up_to_ties
        );
        println!(
            "  search  Qdrant binary + {:<4} rescore {}  top-10 vs local exact {:.3} (equal up to ties {:.3})",
            candidates,
            latency_line(&run.qdrant_binary),
            run.qdrant_binary_top10_vs_exact,
            run.qdrant_binary_top10_equal_up_to_ties
        );
        println!(
            "  search  local exact ({:>6})      {}",
            isa.name(),
            latency_line(&run.local_exact)
        );
        println!(
            "  search  local binary + {:<4} rerank {}  top-10 vs local exact {:.3} (equal up to ties {:.3})",
            candidates,
            latency_line(&run.local_binary),
            run.binary_top10_vs_exact,
            run.binary_top10_equal_up_to_ties
        );
        runs.push(run);
    }
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&runs)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Each query's exact MaxSim score of every page, keyed by point id (the ids Qdrant answers
/// with), for the tie rule.
fn exact_scores_by_point(
    s: &Searcher,
    queries: &[Query],
    n: usize,
    exact: &CpuExact,
) -> Result<Vec<ExactScores>> {
    use std::collections::hash_map::Entry;
    let mut points = std::collections::HashMap::new();
    queries
        .iter()
        .map(|q| {
            let all = Query {
                top_k: n,
                ..q.clone()
            };
            let mut by_point = Vec::with_capacity(n);
            for (id, score) in s.visual_with(&all, n, exact)? {
                let point = match points.entry(id) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(e) => *e.insert(point_of(s, id)?),
                };
                by_point.push((point, score));
            }
            Ok(ExactScores::new(by_point))
        })
        .collect()
}

/// A local page id as its point id (content hash and page number), the id Qdrant answers with.
fn point_of(s: &Searcher, id: u64) -> Result<u64> {
    let h = s.hit(id, 0.0)?;
    Ok(point_id(&h.file_hash, h.page))
}

/// Local page ids as point ids (see [`point_of`]).
fn to_points(s: &Searcher, ids: Vec<u64>) -> Result<Vec<u64>> {
    ids.into_iter().map(|id| point_of(s, id)).collect()
}
