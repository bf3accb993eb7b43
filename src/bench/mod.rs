//! Benchmarks behind `pagesight bench …`. Each prints a table and, with `--json`, one JSON
//! document carrying `SCHEMA_VERSION`.

pub mod loader;
pub mod embed;
pub mod search;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCmd,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// PDF loader throughput: pages/s per worker count, render / resize / patchify split.
    Loader(loader::LoaderBenchArgs),
    /// Model load time, time per page and peak memory.
    Embed(embed::EmbedBenchArgs),
    /// MaxSim search latency, GFLOP/s vs peak, compressed recall, and the torch reference.
    Search(search::SearchBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchCmd::Loader(a) => loader::run(a),
        BenchCmd::Embed(a) => embed::run(a),
        BenchCmd::Search(a) => search::run(a),
    }
}
