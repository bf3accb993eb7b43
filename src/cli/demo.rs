//! `pagesight demo`: the README's run command. Ingests the sample PDFs shipped in assets/ with
//! the real model when it is in the Hugging Face cache (else `random:tiny`, saying so), runs a few
//! searches in every mode and prints the results; then opens the app when there is a display.

use super::progress::EventPrinter;
use anyhow::{bail, Context, Result};
use clap::Args;
use pagesight_engine::{Command, EngineHandle, Event, IngestSettings, SearchMode, SearchRequest};
use pagesight_model::settings::ModelSettings;
use std::path::PathBuf;

/// Queries about the sample PDFs' content.
const DEMO_QUERIES: &[&str] = &[
    "coral bleaching and sea temperature",
    "thermal conductivity of graphene",
    "trade routes of the Hanseatic League",
    "sparse attention in transformers",
];

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Model to use (default: the real ColQwen2.5 from the local HF cache, else random:tiny).
    #[arg(long)]
    pub model: Option<String>,
    /// Index folder (default: the platform data dir's index for the assets folder).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Do not open the app afterwards even when a display is present.
    #[arg(long)]
    pub no_gui: bool,
}

/// The sample PDFs: `assets/` of the source tree, or next to the executable.
pub fn assets_dir() -> Result<PathBuf> {
    let mut c = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            c.push(up.join("assets"));
        }
    }
    c.into_iter()
        .find(|p| p.join("samples").is_dir())
        .map(|p| p.join("samples"))
        .context("the sample PDFs (assets/samples/) were not found next to the executable or in the source tree")
}

pub fn run(a: DemoArgs) -> Result<()> {
    let folder = assets_dir()?;
    let (model, adapter) = match a.model {
        Some(m) => (m, None),
        None => match pagesight_model::colqwen::source::cached_real_model() {
            Some((m, a)) => (m, Some(PathBuf::from(a))),
            None => {
                eprintln!(
                    "note: vidore/colqwen2.5-v0.2 is not in the Hugging Face cache; using random:tiny \
                     (random weights: rankings are meaningless; text search still works)"
                );
                ("random:tiny".to_string(), None)
            }
        },
    };
    let index = a
        .index
        .unwrap_or_else(|| pagesight_common::paths::default_index_for(&folder));
    let mut settings = IngestSettings::with_defaults();
    settings.model = ModelSettings {
        model,
        adapter,
        ..ModelSettings::default()
    };
    let engine = EngineHandle::spawn();
    engine.send(Command::StartIngest {
        folder: folder.clone(),
        index: index.clone(),
        settings,
    });
    let mut printer = EventPrinter::new(false);
    loop {
        let ev = engine
            .events
            .recv()
            .context("the engine stopped unexpectedly")?;
        printer.show(&ev);
        match ev {
            Event::IngestFinished(_) => break,
            Event::Error {
                message,
                request_id: None,
                ..
            } => bail!("{message}"),
            _ => {}
        }
    }
    let mut id = 0;
    for q in DEMO_QUERIES {
        for mode in SearchMode::ALL {
            id += 1;
            engine.send(Command::Search(SearchRequest {
                id,
                index: index.clone(),
                query: q.to_string(),
                top_k: 3,
                mode,
                hybrid_visual_weight: 0.5,
                with_heatmaps: false,
                device: Default::default(),
                devices: None,
                visual_scorer: Default::default(),
                backend: Default::default(),
            }));
            loop {
                match engine
                    .events
                    .recv()
                    .context("the engine stopped unexpectedly")?
                {
                    Event::SearchResults {
                        hits,
                        elapsed_ms,
                        note,
                        ..
                    } => {
                        println!(
                            "\n\"{q}\" ({}, {:.1} ms){}",
                            mode.name(),
                            elapsed_ms,
                            note.map(|n| format!(" — {n}")).unwrap_or_default()
                        );
                        for h in hits {
                            let name = h
                                .file
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            println!("  {}. {:.4}  {name}, page {}", h.rank, h.score, h.page);
                        }
                        break;
                    }
                    Event::Error {
                        context,
                        message,
                        request_id: Some(r),
                    } if r == id => bail!("{context}: {message}"),
                    _ => {}
                }
            }
        }
    }
    drop(engine);
    let display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if display && !a.no_gui {
        return crate::ui::run_app(crate::ui::AppOptions::default());
    }
    if !display {
        println!("\n(no display: not opening the app; run `pagesight` on a desktop to open it)");
    }
    Ok(())
}
