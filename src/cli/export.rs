//! `pagesight export qdrant`: an index's pages into a Qdrant collection (`pagesight-qdrant`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use pagesight_qdrant::{ExportOptions, RetryPolicy, Server};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Subcommand, Debug)]
pub enum ExportTarget {
    /// Push the index's pages into a Qdrant collection (one point per page, its vectors as one
    /// f16 multivector compared with MAX_SIM); a second run sends only what changed.
    Qdrant(QdrantArgs),
}

#[derive(Args, Debug)]
pub struct QdrantArgs {
    /// The index folder.
    #[arg(long, env = crate::env_vars::INDEX)]
    pub index: PathBuf,
    /// The server's gRPC address, http://host:6334 (https:// for TLS).
    #[arg(long)]
    pub url: String,
    /// Collection name (default: the index folder's name).
    #[arg(long)]
    pub collection: Option<String>,
    /// The server's API key, when it has one.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Pages per request at most.
    #[arg(long, default_value_t = ExportOptions::default().batch_pages)]
    pub batch_pages: usize,
    /// Print the report as one JSON line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ExportArgs) -> Result<()> {
    match a.target {
        ExportTarget::Qdrant(q) => qdrant(q),
    }
}

fn qdrant(a: QdrantArgs) -> Result<()> {
    let index = a.index.clone();
    let collection = a
        .collection
        .clone()
        .unwrap_or_else(|| pagesight_qdrant::address::default_collection(&index));
    let server = Server::connect(&a.url, a.api_key.as_deref(), RetryPolicy::default())?;
    let opts = ExportOptions {
        batch_pages: a.batch_pages.max(1),
        ..Default::default()
    };
    let mut last = Instant::now();
    let report = pagesight_qdrant::export(&index, &server, &collection, &opts, &mut |p| {
        if !a.json && (last.elapsed() >= Duration::from_secs(1) || p.sent == p.to_send) {
            eprintln!("sent {}/{} pages", p.sent, p.to_send);
            last = Instant::now();
        }
        ControlFlow::Continue(())
    })
    .with_context(|| format!("exporting {} to Qdrant", index.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}/{}: {} pages sent, {} already there, {} removed{} ({:.1} s, {:.0} pages/s{})",
            report.url,
            report.collection,
            report.sent,
            report.already_there,
            report.removed,
            if report.created {
                ", collection created"
            } else {
                ""
            },
            report.seconds,
            report.sent as f64 / report.seconds.max(1e-9),
            if report.retries > 0 {
                format!(", {} calls retried", report.retries)
            } else {
                String::new()
            }
        );
        println!(
            "search it: pagesight search \"…\" --backend {}",
            pagesight_qdrant::CollectionAddress {
                url: report.url.clone(),
                collection: report.collection.clone()
            }
            .backend_string()
        );
    }
    Ok(())
}
