//! `pagesight search` (being written; see its issue).
use clap::Args;

#[derive(Args, Debug)]
pub struct SearchArgs {}

pub fn run(_args: SearchArgs) -> anyhow::Result<()> {
    anyhow::bail!("`pagesight search` is not implemented yet")
}
