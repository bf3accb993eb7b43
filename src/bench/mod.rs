//! Benchmarks behind `pagesight bench …`. Each prints a table and, with `--json`, one JSON
//! document carrying `SCHEMA_VERSION`. The developer's harnesses (hostile PDFs, crash trials,
//! GEMM and the GPU selftest) come from `pagesight-devtools`, in builds with the `dev-tools`
//! feature only, as does `gui-frames` (the app's frame time in a real window, its download served
//! by the devtools' mock hub).

pub mod cpu_peak;
pub mod embed;
pub mod engine_search;
#[cfg(feature = "dev-tools")]
pub mod gui_frames;
pub mod ingest;
pub mod journey;
pub mod loader;
pub mod memory_latency;
pub mod qdrant;
pub mod search;
mod search_paired;
mod search_peers;
pub mod search_reference;
mod search_report;
pub mod search_synthetic;
pub mod search_tensor;
mod search_timing;
pub mod search_variants;

use clap::{Args, Subcommand};
#[cfg(feature = "dev-tools")]
use pagesight_devtools::{crash, gemm, gpu_selftest, hostile};

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
    /// Searches as the app runs them (the engine's `Command::Search`, query embedded by the
    /// index's model) on synthetic pages in a real index: first search and warm p50/p99 per mode.
    EngineSearch(engine_search::EngineSearchArgs),
    /// The index served by Qdrant: export throughput, then search p50 through Qdrant next to the
    /// local exact and binary scorers, on the same synthetic pages (needs a running server).
    Qdrant(qdrant::QdrantBenchArgs),
    /// The app's path: launch, model load, ingest of a folder with the user's defaults, warm
    /// searches in every mode, thumbnails; what the user waits for at each step.
    Journey(journey::JourneyArgs),
    #[cfg(feature = "dev-tools")]
    /// The desktop app's frame time in a real window (needs a display; xvfb-run without one):
    /// an autopilot goes idle → ingest → watch events and their ingests → a model download from
    /// a mock hub → searches; p50/p90/p99/max per phase.
    GuiFrames(gui_frames::GuiFramesArgs),
    #[cfg(feature = "dev-tools")]
    /// Hostile PDFs: generates a seeded corpus of broken, encrypted, huge and odd files, ingests
    /// it and prints files tried / done / failed by reason / crashes / hangs / slowest file.
    Hostile(hostile::HostileBenchArgs),
    #[cfg(feature = "dev-tools")]
    /// Crash consistency of a real ingest: SIGKILL trials, render workers killed, disk full,
    /// searches during ingest.
    Crash(crash::CrashBenchArgs),
    #[cfg(feature = "dev-tools")]
    /// The model's linear layers on the GPU: cuBLASLt with the bias in its epilogue against
    /// candle's matmul and a bias pass (TFLOP/s per shape), then the attention kernel in the
    /// model's shapes; needs a `cuda` build.
    Gemm(gemm::GemmBenchArgs),
    #[cfg(feature = "dev-tools")]
    /// GPU pipeline proofs (streams, overlap, no early reads, GPU patchify, NF4 kernel); needs
    /// a `cuda` build and an NVIDIA GPU. Prints PASS/FAIL lines.
    GpuSelftest(gpu_selftest::GpuSelftestArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        BenchCmd::Ingest(a) => ingest::run(a),
        BenchCmd::Loader(a) => loader::run(a),
        BenchCmd::Embed(a) => embed::run(a),
        #[cfg(feature = "dev-tools")]
        BenchCmd::Gemm(a) => gemm::run(a),
        BenchCmd::Search(a) => search::run(a),
        BenchCmd::EngineSearch(a) => engine_search::run(a),
        BenchCmd::Journey(a) => journey::run(a),
        BenchCmd::Qdrant(a) => qdrant::run(a),
        #[cfg(feature = "dev-tools")]
        BenchCmd::GpuSelftest(a) => gpu_selftest::run(a),
        #[cfg(feature = "dev-tools")]
        BenchCmd::Hostile(a) => hostile::run(a),
        #[cfg(feature = "dev-tools")]
        BenchCmd::GuiFrames(a) => gui_frames::run(a),
        #[cfg(feature = "dev-tools")]
        BenchCmd::Crash(a) => crash::run(a),
    }
}
