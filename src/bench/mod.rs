//! Benchmarks behind `pagesight bench …`. Each prints a table and, with `--json`, one JSON
//! document carrying `SCHEMA_VERSION`.

#[cfg(feature = "cuda")]
pub mod gpu_nf4_check;
pub mod gpu_selftest;
pub mod loader;

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
    /// GPU pipeline proofs (streams, overlap, no early reads, GPU patchify, NF4 kernel); needs
    /// a `cuda` build and an NVIDIA GPU. Prints PASS/FAIL lines.
    GpuSelftest(gpu_selftest::GpuSelftestArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchCmd::Loader(a) => loader::run(a),
        BenchCmd::GpuSelftest(a) => gpu_selftest::run(a),
    }
}
