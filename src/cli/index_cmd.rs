//! `pagesight index_cmd` (being written; see its issue).
use clap::Args;

#[derive(Args, Debug)]
pub struct IndexArgs {}

pub fn run(_args: IndexArgs) -> anyhow::Result<()> {
    anyhow::bail!("`pagesight index_cmd` is not implemented yet")
}
