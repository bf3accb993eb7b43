//! The egui desktop app. It talks to the engine only through its channels: it sends `Command`s
//! and drains `Event`s each frame under a time budget, so the UI thread never waits on engine work.

mod app;
mod background;
mod format;
mod frame_stats;
mod heatmap;
mod ingest;
mod open_pdf;
mod performance;
mod plots;
pub mod runs;
mod search;
pub mod settings;
mod status_bar;
mod thumbnails;

pub use app::{AppOptions, PagesightApp, Tab};
pub use frame_stats::FrameStats;
pub use ingest::RunState;

/// Opens the desktop window with a freshly spawned engine.
pub fn run_app() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Glow,
        viewport: egui::ViewportBuilder::default()
            .with_title("Pagesight")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    // TODO(engine merge): replace with `crate::engine::EngineHandle::spawn()` once the engine lands.
    // Until then the command receiver is dropped, so every command reports "engine not running".
    let (commands, _) = crossbeam_channel::unbounded();
    let (_, events) = crossbeam_channel::unbounded();
    eframe::run_native(
        "Pagesight",
        options,
        Box::new(move |cc| {
            Ok(Box::new(PagesightApp::new(
                cc,
                commands,
                events,
                AppOptions::default(),
            )))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "could not open the window: {e} (no display? use the headless subcommands, see --help)"
        )
    })
}
