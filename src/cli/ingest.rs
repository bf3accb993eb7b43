//! `pagesight ingest <folder>`.
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Folder to walk for PDFs.
    pub folder: PathBuf,
}

pub fn run(_args: IngestArgs) -> anyhow::Result<()> {
    anyhow::bail!("`pagesight ingest` is not implemented yet")
}
