//! The egui desktop app. It talks to the engine only through its channels: it sends `Command`s
//! and drains `Event`s each frame under a time budget, so the UI thread never waits on engine work.

mod app;
#[cfg(feature = "dev-tools")]
pub mod autopilot;
mod background;
mod card_choice;
mod corpus_form;
mod cost_estimate;
pub(crate) mod format;
mod frame_stats;
mod heatmap;
mod ingest;
pub mod library;
mod model_choice;
pub mod model_panel;
mod open_pdf;
mod performance;
mod plots;
mod replica_table;
mod reveal;
pub mod runs;
mod search;
pub mod settings;
mod status_bar;
mod thumbnails;
mod transfer_choice;
pub mod watch;

pub use app::{AppOptions, PagesightApp, Tab};
pub use frame_stats::FrameStats;
pub use ingest::RunState;

/// Opens the desktop window with a freshly spawned engine.
pub fn run_app(app_options: AppOptions) -> anyhow::Result<()> {
    open_window(app_options, None, |app| Box::new(app))
}

/// Opens the window on a freshly spawned engine; `wrap` makes the `eframe::App` the window runs
/// from the app (the app itself, or `bench gui-frames`' autopilot around it). `persistence`: the
/// folder eframe keeps the settings in (None: the platform's).
pub(crate) fn open_window(
    mut app_options: AppOptions,
    persistence: Option<std::path::PathBuf>,
    wrap: impl FnOnce(PagesightApp) -> Box<dyn eframe::App> + 'static,
) -> anyhow::Result<()> {
    // The window watches the library's folders while it is open.
    app_options
        .watch
        .get_or_insert_with(watch::WatchTimings::default);
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Glow,
        viewport: egui::ViewportBuilder::default()
            .with_title("Pagesight")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        persistence_path: persistence,
        ..Default::default()
    };
    let engine = pagesight_engine::EngineHandle::spawn();
    let (commands, events) = (engine.commands.clone(), engine.events.clone());
    eframe::run_native(
        "Pagesight",
        options,
        Box::new(move |cc| {
            // The window owns the engine: closing it drops the handle, which stops the engine.
            let app = PagesightApp::new(cc, commands, events, app_options).keep_alive(engine);
            Ok(wrap(app))
        }),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "could not open the window: {e} (no display? use the headless subcommands, see --help)"
        )
    })
}
