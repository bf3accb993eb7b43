//! Command-line front end: headless subcommands that drive the same engine as the GUI.

pub mod args;
pub mod demo;
pub mod embed;
pub mod export;
pub mod index_cmd;
pub mod ingest;
pub mod progress;
pub mod search;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "pagesight",
    version,
    about = "Search the pages of your PDFs with ColQwen2.5"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Turn every PDF page under a folder into vectors in the local index.
    Ingest(ingest::IngestArgs),
    /// Search an index.
    Search(search::SearchArgs),
    /// Embed images and queries with the model and write the vectors to a safetensors file.
    Embed(embed::EmbedArgs),
    /// Benchmarks (loader, embed, search, ingest).
    Bench(crate::bench::BenchArgs),
    /// Index maintenance: stats, verify, delete, compact.
    Index(index_cmd::IndexArgs),
    /// Push an index's pages to a search server (Qdrant).
    Export(export::ExportArgs),
    /// Ingest the sample PDFs and run example searches (the README's run command).
    Demo(demo::DemoArgs),
    /// Open the desktop app (the default with no subcommand).
    Gui(GuiArgs),
    /// Internal: a render worker process, driven over stdin/stdout by the loader.
    #[command(name = "__render-worker", hide = true)]
    RenderWorker,
    /// Internal: a synthetic ingest that the index crash tests SIGKILL.
    #[cfg(feature = "dev-tools")]
    #[command(name = "__index-stress", hide = true)]
    IndexStress(pagesight_devtools::index_stress::StressArgs),
}

#[derive(clap::Args, Debug)]
pub struct GuiArgs {
    /// The PDF folder to start with (instead of the remembered one).
    #[arg(long)]
    pub folder: Option<std::path::PathBuf>,
    /// Open a recorded run file (`bench ingest --json` output, an A/B export) in the Performance
    /// view, e.g. the figures of a GPU machine on a laptop without one.
    #[arg(long)]
    pub runs: Option<std::path::PathBuf>,
    /// The model to start with (instead of the remembered one): a snapshot folder, a hub id
    /// (owner/name), or a developer's random model, `random:tiny` (meaningless rankings, nothing
    /// to download; the screenshots script uses it).
    #[arg(long)]
    pub model: Option<String>,
}

/// The model settings `pagesight gui --model <name>` starts with: the published model with its
/// adapter when that is the name, else the name alone.
fn gui_model(name: &str) -> pagesight_model::ModelSettings {
    use pagesight_model::hub::{DEFAULT_ADAPTER, DEFAULT_MODEL};
    pagesight_model::ModelSettings {
        model: name.to_string(),
        adapter: (name == DEFAULT_MODEL).then(|| DEFAULT_ADAPTER.into()),
        ..Default::default()
    }
}

/// Runs a parsed command line. `None` opens the GUI.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => crate::ui::run_app(crate::ui::AppOptions::default()),
        Some(Commands::Gui(a)) => crate::ui::run_app(crate::ui::AppOptions {
            folder: a.folder,
            runs_file: a.runs,
            model: a.model.as_deref().map(gui_model),
            ..Default::default()
        }),
        Some(Commands::Demo(a)) => demo::run(a),
        Some(Commands::Ingest(a)) => ingest::run(a),
        Some(Commands::Search(a)) => search::run(a),
        Some(Commands::Embed(a)) => embed::run(a),
        Some(Commands::Bench(a)) => crate::bench::run(a),
        Some(Commands::Index(a)) => index_cmd::run(a),
        Some(Commands::Export(a)) => export::run(a),
        Some(Commands::RenderWorker) => pagesight_loader::worker::worker_main(),
        #[cfg(feature = "dev-tools")]
        Some(Commands::IndexStress(a)) => pagesight_devtools::index_stress::run_stress(a),
    }
}
