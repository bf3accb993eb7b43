//! `pagesight ingest <folder>`: walks the folder and puts every PDF page into the index.

use super::args::IngestTargetArgs;
use super::progress::EventPrinter;
use anyhow::{bail, Result};
use clap::Args;
use pagesight_engine::{Command, EngineHandle, Event};

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub target: IngestTargetArgs,
    /// Remove files from the index that are no longer in the folder.
    #[arg(long)]
    pub prune: bool,
    /// Commit every N pages.
    #[arg(long, default_value_t = 64)]
    pub commit_every: usize,
    /// Stop after N pages.
    #[arg(long)]
    pub max_pages: Option<usize>,
    /// Print one JSON event per line instead of progress bars.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: IngestArgs) -> Result<()> {
    let folder = &a.target.folder;
    if !folder.is_dir() {
        bail!("{} is not a folder", folder.display());
    }
    let index = a.target.index_dir();
    let (mut settings, existing) = a.target.settings()?;
    eprintln!("{}", describe_settings(&settings, existing));
    settings.prune = a.prune;
    settings.commit_every_pages = a.commit_every;
    settings.max_pages = a.max_pages;
    let engine = EngineHandle::spawn();
    engine.send(Command::StartIngest {
        folder: folder.clone(),
        index,
        settings,
    });
    let mut printer = EventPrinter::new(a.json);
    for ev in engine.events.iter() {
        printer.show(&ev);
        match ev {
            Event::IngestFinished(s) => {
                return if s.files_failed > 0
                    && s.pages_ingested == 0
                    && s.files_done == 0
                    && s.files_skipped == 0
                {
                    bail!("no file could be ingested")
                } else {
                    Ok(())
                };
            }
            Event::Error {
                context,
                message,
                request_id: None,
            } if context.starts_with("ingest") => {
                bail!("{message}")
            }
            _ => {}
        }
    }
    bail!("the engine stopped unexpectedly")
}

/// One line saying what the run will use, and where the precision came from.
fn describe_settings(s: &pagesight_engine::IngestSettings, existing: bool) -> String {
    let m = &s.model;
    let quant = match m.quant {
        pagesight_engine::Quant::None => "unquantised".to_string(),
        q => format!("{} ({} layers)", q.name(), m.quant_scope.name()),
    };
    format!(
        "settings: model {}, device {}, {} compute, {quant}, transfer {}, batch {}, {} render workers ({})",
        m.model,
        s.devices
            .as_ref()
            .map_or_else(|| m.device.to_string(), |d| d.to_string()),
        m.dtype.name(),
        s.live.transfer.name(),
        s.live.batch_size,
        s.loader.workers,
        if existing {
            "precision as the index was made"
        } else {
            "precision: the device's best unless a flag said otherwise"
        }
    )
}
