//! `pagesight index stats|verify|delete <file>|compact [--index DIR] [--json]`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use pagesight_index::{format::hex, Index};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub action: IndexAction,
    /// The index folder.
    #[arg(
        long,
        global = true,
        env = crate::env_vars::INDEX,
        default_value = "pagesight-index"
    )]
    pub index: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum IndexAction {
    /// Files, pages, vectors, segments, size and what made the vectors.
    Stats,
    /// Recompute every checksum and cross-check the manifest, segments and text index.
    Verify,
    /// Remove a file's pages (by its path as ingested, or its content hash).
    Delete { file: String },
    /// Rewrite live pages into one segment, reclaiming deleted pages' space.
    Compact,
}

pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let dir = &args.index;
    match args.action {
        IndexAction::Stats => {
            let ix =
                Index::open(dir).with_context(|| format!("opening index {}", dir.display()))?;
            let s = ix.stats();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("index      {}", s.path.display());
                println!("files      {} ({} complete)", s.files, s.files_complete);
                println!(
                    "pages      {} ({} deleted, awaiting compact)",
                    s.pages, s.deleted_pages
                );
                println!("vectors    {}", s.vectors);
                println!("segments   {}", s.segments);
                println!(
                    "on disk    {:.1} MB ({:.0} bytes per stored page)",
                    s.bytes_on_disk as f64 / 1e6,
                    s.bytes_per_page
                );
                println!("commit     {}", s.generation);
                println!("vectors of {}", s.model);
                for w in ix.warnings() {
                    println!("warning    {w}");
                }
            }
        }
        IndexAction::Verify => {
            let r = Index::verify(dir)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{}: {} segments, {} pages, {:.1} MB checked, {} text docs",
                    dir.display(),
                    r.segments_checked,
                    r.pages_checked,
                    r.bytes_checked as f64 / 1e6,
                    r.text_docs
                );
                for n in &r.notes {
                    println!("note: {n}");
                }
                for p in &r.problems {
                    println!("PROBLEM: {p}");
                }
                println!("{}", if r.ok { "OK" } else { "DAMAGED" });
            }
            if !r.ok {
                bail!(
                    "index {} failed verification ({} problems)",
                    dir.display(),
                    r.problems.len()
                );
            }
        }
        IndexAction::Delete { file } => {
            let ix = Index::open(dir)?;
            let prov = ix.provenance().clone();
            drop(ix);
            let mut ix = Index::open_or_create(dir, &prov)?;
            let hash = find_file(&ix, &file)?;
            let pages = ix.file_state(&hash).map(|s| s.pages_committed).unwrap_or(0);
            ix.remove_file(&hash)?;
            let info = ix.commit()?;
            report(
                args.json,
                &serde_json::json!({"deleted": file, "hash": hex(&hash), "pages": pages, "pages_total": info.pages_total}),
                &format!("deleted {file}: {pages} pages ({} left)", info.pages_total),
            )?;
        }
        IndexAction::Compact => {
            let ix = Index::open(dir)?;
            let prov = ix.provenance().clone();
            let before = ix.stats();
            drop(ix);
            let mut ix = Index::open_or_create(dir, &prov)?;
            let info = ix.compact()?;
            let after = ix.stats();
            report(
                args.json,
                &serde_json::json!({"pages": info.pages_total, "bytes_before": before.bytes_on_disk, "bytes_after": after.bytes_on_disk, "segments": after.segments}),
                &format!(
                    "compacted: {} pages, {:.1} MB → {:.1} MB",
                    info.pages_total,
                    before.bytes_on_disk as f64 / 1e6,
                    after.bytes_on_disk as f64 / 1e6
                ),
            )?;
        }
    }
    Ok(())
}

fn report(json: bool, v: &serde_json::Value, text: &str) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

/// A file by content hash, exact ingested path, or a path naming the same file.
fn find_file(ix: &Index, file: &str) -> anyhow::Result<[u8; 32]> {
    let files = ix.files();
    if let Some((h, _)) = files
        .iter()
        .find(|(h, st)| hex(h) == file || st.path == Path::new(file))
    {
        return Ok(*h);
    }
    let canon = std::fs::canonicalize(file).ok();
    if let Some((h, _)) = files
        .iter()
        .find(|(_, st)| canon.is_some() && std::fs::canonicalize(&st.path).ok() == canon)
    {
        return Ok(*h);
    }
    bail!("{file} is not in the index {} (give the path as ingested or its content hash; `pagesight index stats` lists the index)", ix.dir().display())
}
