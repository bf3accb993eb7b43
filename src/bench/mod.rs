//! Benchmarks behind `pagesight bench …`. Each prints a table and, with `--json`, one JSON
//! document carrying `SCHEMA_VERSION`.

pub mod cpu_peak;
pub mod crash;
pub mod embed;
pub mod gemm;
#[cfg(feature = "cuda")]
pub mod gpu_attention_check;
#[cfg(feature = "cuda")]
pub mod gpu_model_check;
#[cfg(feature = "cuda")]
pub mod gpu_nf4_check;
pub mod gpu_selftest;
pub mod hostile;
pub mod ingest;
pub mod loader;
pub mod memory_latency;
pub mod model_parity;
pub mod search;
mod search_paired;
pub mod search_reference;
mod search_report;
pub mod search_tensor;
mod search_timing;
pub mod search_variants;

use clap::{Args, Subcommand};

/// The median of `v` (the mean of the two middle values of an even count); NaN when empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchCmd,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// The ingest pipeline under each transfer mode × quantisation, same pages, one process.
    Ingest(ingest::IngestBenchArgs),
    /// PDF loader throughput: pages/s per worker count, render / resize / patchify split.
    Loader(loader::LoaderBenchArgs),
    /// Model load time, time per page and peak memory.
    Embed(embed::EmbedBenchArgs),
    /// MaxSim search latency, GFLOP/s vs peak, compressed recall, and the torch reference.
    Search(search::SearchBenchArgs),
    /// Hostile PDFs: generates a seeded corpus of broken, encrypted, huge and odd files, ingests
    /// it and prints files tried / done / failed by reason / crashes / hangs / slowest file.
    Hostile(hostile::HostileBenchArgs),
    /// Crash consistency of a real ingest: SIGKILL trials, render workers killed, disk full,
    /// searches during ingest.
    Crash(crash::CrashBenchArgs),
    /// The model's linear layers on the GPU: cuBLASLt with the bias in its epilogue against
    /// candle's matmul and a bias pass (TFLOP/s per shape); needs a `cuda` build.
    Gemm(gemm::GemmBenchArgs),
    /// GPU pipeline proofs (streams, overlap, no early reads, GPU patchify, NF4 kernel); needs
    /// a `cuda` build and an NVIDIA GPU. Prints PASS/FAIL lines.
    GpuSelftest(gpu_selftest::GpuSelftestArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchCmd::Ingest(a) => ingest::run(a),
        BenchCmd::Loader(a) => loader::run(a),
        BenchCmd::Embed(a) => embed::run(a),
        BenchCmd::Gemm(a) => gemm::run(a),
        BenchCmd::Search(a) => search::run(a),
        BenchCmd::GpuSelftest(a) => gpu_selftest::run(a),
        BenchCmd::Hostile(a) => hostile::run(a),
        BenchCmd::Crash(a) => crash::run(a),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(super::median(Vec::new()).is_nan());
    }
}
