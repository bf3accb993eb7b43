//! `pagesight embed` (being written; see its issue).
use clap::Args;

#[derive(Args, Debug)]
pub struct EmbedArgs {}

pub fn run(_args: EmbedArgs) -> anyhow::Result<()> {
    anyhow::bail!("`pagesight embed` is not implemented yet")
}
