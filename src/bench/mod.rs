//! Benchmarks behind `pagesight bench …`. Each prints a table and, with `--json`, one JSON
//! document carrying `SCHEMA_VERSION`.

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCmd,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {}
}
