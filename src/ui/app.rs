//! The app: state, the per-frame event drain (bounded by a time budget), routing of events to the
//! views, and turning the views' actions into engine commands.

mod actions;
mod drain;
mod events;
mod export;
mod frame;
mod library;
mod precision;
mod start;
mod watch;

use super::background::{Background, UiMsg};
use super::cost_estimate::Answer as EstimateAnswer;
use super::frame_stats::FrameStats;
use super::ingest::{IngestAction, IngestView, RunState};
use super::library::LibraryView;
use super::model_panel::PanelAction;
use super::performance::{AbState, PerfAction, PerformanceView};
use super::runs::RecordedRuns;
use super::search::{SearchAction, SearchView};
use super::settings::UiSettings;
use super::status_bar::StatusInfo;
use super::thumbnails::{ThumbKey, Thumbnails};
use crossbeam_channel::{Receiver, Sender};
use pagesight_engine::command::AbSide;
use pagesight_engine::event::Event;
use pagesight_engine::library_search::gather::Gather;
use pagesight_engine::{
    Command, IngestSettings, LiveSettings, ModelSettings, SearchBackend, SearchRequest,
    TransferMode, VisualScorer,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the app is wired beyond the engine channels; tests and `--index` style callers fill it in.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Index to use instead of the per-folder default.
    pub index: Option<PathBuf>,
    /// Folder to start with (instead of the remembered one).
    pub folder: Option<PathBuf>,
    /// What every ingest and A/B starts from before the form's choices (model, device, quantisation,
    /// batch size, workers, transfer mode) are applied: loader details such as the render DPI and
    /// the render-worker executable (tests: the built `pagesight` binary).
    pub base_settings: Option<IngestSettings>,
    /// Model settings to start with (instead of the remembered ones).
    pub model: Option<ModelSettings>,
    /// Where exports go.
    pub export_dir: Option<PathBuf>,
    /// Longest time one frame spends draining engine events; the rest waits for the next frame.
    pub drain_budget: Duration,
    /// Thumbnail textures kept in memory.
    pub thumbnail_cache: usize,
    /// A recorded-run file (benchmark JSON) to open in the Performance view at start.
    pub runs_file: Option<PathBuf>,
    /// Watch the library's folders with these timings; None: no watching (the window sets it;
    /// headless tests that are not about watching leave it off).
    pub watch: Option<super::watch::WatchTimings>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            index: None,
            folder: None,
            base_settings: None,
            model: None,
            export_dir: None,
            drain_budget: Duration::from_millis(3),
            thumbnail_cache: 256,
            runs_file: None,
            watch: None,
        }
    }
}

/// What a click or a key in one of the views asks the app to do.
pub(crate) enum UserAction {
    Ingest(IngestAction),
    Search(SearchAction),
    ModelPanel(PanelAction),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Ingest,
    Search,
    Performance,
}

struct Notice {
    text: String,
    error: bool,
}

pub struct PagesightApp {
    commands: Sender<Command>,
    events: Receiver<Event>,
    bg_rx: Receiver<UiMsg>,
    bg: Background,
    options: AppOptions,
    pub settings: UiSettings,
    pub tab: Tab,
    pub ingest: IngestView,
    pub search: SearchView,
    pub perf: PerformanceView,
    pub library: LibraryView,
    /// Whether the chosen model is on disk, and its download.
    pub model_panel: super::model_panel::ModelPanel,
    /// The library search whose corpora have not all answered yet.
    gather: Option<Gather>,
    watch: watch::WatchLink,
    pub status: StatusInfo,
    thumbs: Thumbnails,
    notices: Vec<Notice>,
    frames: FrameStats,
    next_id: u64,
    applied_theme: Option<super::settings::Theme>,
    /// Whatever must live as long as the window (the `EngineHandle`: dropping it stops the engine).
    keep_alive: Option<Box<dyn std::any::Any>>,
}

impl PagesightApp {
    /// `commands` and `events` are the two ends of an engine (`EngineHandle`).
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        commands: Sender<Command>,
        events: Receiver<Event>,
        options: AppOptions,
    ) -> Self {
        let mut settings = UiSettings::load(cc.storage);
        if let Some(f) = &options.folder {
            settings.folder = f.display().to_string();
        }
        if let Some(m) = &options.model {
            settings.model = m.clone();
        }
        let (bg_tx, bg_rx) = crossbeam_channel::unbounded();
        let ctx = cc.egui_ctx.clone();
        let watch = watch::WatchLink::new(options.watch.map(|t| {
            let ctx = ctx.clone();
            super::watch::WatchService::spawn(t, move || ctx.request_repaint())
        }));
        let mut app = PagesightApp {
            commands,
            events,
            bg_rx,
            bg: Background::new(bg_tx, ctx.clone()),
            thumbs: Thumbnails::new(ctx, options.thumbnail_cache),
            options,
            settings,
            tab: Tab::Ingest,
            ingest: IngestView::default(),
            search: SearchView::default(),
            perf: PerformanceView::default(),
            library: LibraryView::default(),
            model_panel: Default::default(),
            gather: None,
            watch,
            status: StatusInfo::default(),
            notices: Vec::new(),
            frames: FrameStats::default(),
            next_id: 1,
            applied_theme: None,
            keep_alive: None,
        };
        app.send(Command::DeviceInfo);
        if let Some(runs) = app.options.runs_file.clone() {
            app.perf.run_file = runs.display().to_string();
            app.perf.section = super::performance::Section::Compare;
            app.tab = Tab::Performance;
            app.bg.load_runs(runs);
        }
        if let Some(folder) = app.options.folder.clone() {
            app.ensure_corpus(&folder);
        }
        let indexes: Vec<PathBuf> = app
            .settings
            .library
            .iter()
            .map(|c| c.index.clone())
            .collect();
        for index in indexes.into_iter().filter(|i| i.exists()) {
            app.send(Command::Stats { index });
        }
        app
    }

    /// Keeps `owner` (e.g. the `EngineHandle`) alive as long as the app.
    pub fn keep_alive(mut self, owner: impl std::any::Any) -> Self {
        self.keep_alive = Some(Box::new(owner));
        self
    }

    pub fn thumbnails(&self) -> &Thumbnails {
        &self.thumbs
    }

    pub fn frame_stats(&self) -> &FrameStats {
        &self.frames
    }

    pub fn frame_stats_mut(&mut self) -> &mut FrameStats {
        &mut self.frames
    }

    /// Messages shown to the user (errors and notices), oldest first.
    pub fn notices(&self) -> Vec<String> {
        self.notices.iter().map(|n| n.text.clone()).collect()
    }

    /// The index for the form's folder: its corpus's, else the one it would get when added.
    pub fn index_path(&self) -> Option<PathBuf> {
        let folder = Path::new(self.settings.folder.trim());
        match self.settings.corpus_of(folder) {
            Some(at) => Some(self.settings.library[at].index.clone()),
            None => self.index_for_new(folder),
        }
    }

    /// The index a corpus of `folder` gets: the app's `--index` while no corpus has it, else the
    /// per-folder default.
    fn index_for_new(&self, folder: &Path) -> Option<PathBuf> {
        if folder.as_os_str().is_empty() {
            return None;
        }
        match &self.options.index {
            Some(i) if !self.settings.library.iter().any(|c| &c.index == i) => Some(i.clone()),
            _ => Some(pagesight_common::paths::default_index_for(folder)),
        }
    }

    /// Sets the corpus folder as if the user had picked it.
    pub fn set_folder(&mut self, folder: &Path) {
        self.settings.folder = folder.display().to_string();
    }

    fn send(&mut self, cmd: Command) -> bool {
        match self.commands.send(cmd) {
            Ok(()) => {
                self.status.engine_down = false;
                true
            }
            Err(_) => {
                if !self.status.engine_down {
                    self.notify_error("engine", "the engine is not running; restart pagesight");
                }
                self.status.engine_down = true;
                false
            }
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn notify(&mut self, text: impl Into<String>) {
        self.push_notice(Notice {
            text: text.into(),
            error: false,
        });
    }

    fn notify_error(&mut self, context: &str, message: &str) {
        self.push_notice(Notice {
            text: format!("{context}: {message}"),
            error: true,
        });
    }

    fn push_notice(&mut self, n: Notice) {
        tracing::info!(error = n.error, "{}", n.text);
        self.notices.push(n);
        if self.notices.len() > 50 {
            self.notices.remove(0);
        }
    }

    fn request_thumbnail(&mut self, key: ThumbKey) {
        let id = self.id();
        self.thumbs.request(&key, id, &self.commands);
    }

    /// The chosen adapter (a folder or a hub id) as text, if there is one.
    fn adapter_name(&self) -> Option<String> {
        self.settings
            .model
            .adapter
            .as_ref()
            .map(|a| a.to_string_lossy().into_owned())
    }

    /// Asks the engine whether the chosen model is on disk when the choice changed.
    fn check_model(&mut self) {
        let adapter = self.adapter_name();
        if let Some(cmd) = self
            .model_panel
            .check_if_changed(&self.settings.model.model, adapter.as_deref())
        {
            self.send(cmd);
        }
    }

    fn model_panel_ui(&mut self, ctx: &egui::Context, ui: &mut egui::Ui) {
        let name = if super::model_choice::is_real_model(&self.settings.model) {
            super::model_choice::REAL_MODEL_LABEL.to_string()
        } else {
            self.settings.model.model.clone()
        };
        if let Some(a) = self.model_panel.show(ui, &name) {
            self.act(ctx, UserAction::ModelPanel(a));
        }
    }

    /// Whether the ingest running now is one the watch started.
    #[cfg(feature = "dev-tools")]
    pub(crate) fn watch_ingest_running(&self) -> bool {
        self.watch.running.is_some() && self.ingest.state.is_active()
    }

    /// Folders whose changes wait for an ingest.
    #[cfg(feature = "dev-tools")]
    pub(crate) fn watch_queued(&self) -> usize {
        self.watch.queue.len()
    }

    fn index_ready(&self) -> Result<(), &'static str> {
        if self.settings.library.is_empty() {
            return Err("Choose a corpus folder (Corpus / Ingest) to search its index.");
        }
        if !self.settings.library.iter().any(|c| c.searched) {
            return Err("Tick at least one corpus of the library (Corpus / Ingest) to search it.");
        }
        Ok(())
    }
}
