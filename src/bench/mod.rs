//! Benchmarks behind `pagesight bench …`. Each prints a table and, with `--json`, one JSON
//! document carrying `SCHEMA_VERSION`.

pub mod search;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCmd,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// MaxSim search latency, GFLOP/s vs peak, compressed recall, and the torch reference.
    Search(search::SearchBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchCmd::Search(a) => search::run(a),
    }
}
