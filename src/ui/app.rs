//! The app: state, the per-frame event drain (bounded by a time budget), routing of events to the
//! views, and turning the views' actions into engine commands.

mod actions;
mod events;
mod library;
mod precision;
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

    fn ingest_settings(&self) -> IngestSettings {
        let mut s = self
            .options
            .base_settings
            .clone()
            .unwrap_or_else(IngestSettings::with_defaults);
        s.model = self.settings.model.clone();
        if self.settings.best_precision {
            self.best_precision().apply_to(&mut s.model);
        }
        let cards = self.cards();
        let chosen =
            super::card_choice::chosen(s.model.device, &cards, &self.settings.unticked_cards);
        if let Some(set) = chosen {
            s.set_devices(&set);
        }
        s.loader.workers = self.settings.workers.max(1);
        // A mode remembered from a GPU machine would be refused here: use the one every device has.
        let transfer = if self.cuda_usable() {
            self.settings.transfer
        } else {
            TransferMode::Pageable
        };
        s.live = LiveSettings {
            batch_size: self.settings.batch_size.max(1),
            transfer,
        };
        s
    }

    /// The machine's CUDA cards as the engine reported them (none until it has).
    fn cards(&self) -> Vec<pagesight_engine::event::CardInfo> {
        self.status
            .device
            .as_ref()
            .map(|d| d.cards.clone())
            .unwrap_or_default()
    }

    pub(crate) fn cuda_usable(&self) -> bool {
        super::transfer_choice::transfer_unavailable(self.status.device.as_ref()).is_none()
    }

    /// Drains engine events until the channel is empty or the budget is spent; returns whether
    /// events were left for the next frame.
    fn drain_events(&mut self) -> bool {
        let start = Instant::now();
        loop {
            if start.elapsed() >= self.options.drain_budget {
                return !self.events.is_empty();
            }
            match self.events.try_recv() {
                Ok(ev) => self.on_event(ev),
                Err(crossbeam_channel::TryRecvError::Empty) => return false,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    if !self.status.engine_down {
                        self.status.engine_down = true;
                        self.notify_error("engine", "the engine stopped; restart pagesight");
                        self.end_pending_work("the engine stopped");
                    }
                    return false;
                }
            }
        }
    }

    fn end_pending_work(&mut self, why: &str) {
        if self.ingest.state.is_active() {
            self.ingest.state = RunState::Failed(why.into());
        }
        if matches!(self.perf.ab, AbState::Running { .. }) {
            self.perf.ab = AbState::Failed(why.into());
        }
        self.search.pending = None;
    }

    fn request_thumbnail(&mut self, key: ThumbKey) {
        let id = self.id();
        self.thumbs.request(&key, id, &self.commands);
    }

    fn on_ui_msg(&mut self, msg: UiMsg) {
        match msg {
            UiMsg::FolderPicked(Some(f)) => self.set_folder(&f),
            UiMsg::FolderPicked(None) => self.notify(
                "no folder chosen (if no dialog appeared, install zenity or xdg-desktop-portal, or type the path)",
            ),
            UiMsg::RunFilePicked(Some(p)) => {
                self.perf.run_file = p.display().to_string();
                self.bg.load_runs(p);
            }
            UiMsg::RunFilePicked(None) => {}
            UiMsg::RunsLoaded { path, result: Ok(runs) } => {
                self.notify(format!("loaded {} run(s) from {}", runs.len(), path.display()));
                self.perf.add_loaded(&path, runs);
            }
            UiMsg::RunsLoaded { path, result: Err(e) } => self.notify_error(&path.display().to_string(), &e),
            UiMsg::Info(text) => self.notify(text),
            UiMsg::Failed { context, message } => self.notify_error(&context, &message),
        }
    }

    /// Start: ingests the form's folder, which joins the library if new.
    fn start_ingest(&mut self) {
        let folder = PathBuf::from(self.settings.folder.trim());
        if let Some(at) = self.ensure_corpus(&folder) {
            self.start_ingest_of(at, false);
        }
    }

    /// Ingests the library's corpus `at`; `prune` removes the pages of vanished files.
    fn start_ingest_of(&mut self, at: usize, prune: bool) {
        let Some(c) = self.settings.library.get(at) else {
            return;
        };
        let (folder, index) = (c.folder.clone(), c.index.clone());
        let mut settings = self.ingest_settings();
        settings.prune = prune;
        self.settings.remember_folder(&folder);
        self.ingest.begin(folder.clone(), index.clone());
        self.perf.reset_live("ingest".into());
        if !self.send(Command::StartIngest {
            folder,
            index,
            settings,
        }) {
            self.ingest.state = RunState::Failed("the engine is not running".into());
        }
    }

    fn run_ab(&mut self) {
        let folder = PathBuf::from(self.settings.folder.trim());
        let cuda = self.cuda_usable();
        let side = |form: &super::settings::AbSideForm, base: &IngestSettings| {
            let mut s = base.clone();
            s.live.batch_size = form.batch_size.max(1);
            s.loader.workers = form.workers.max(1);
            s.model.quant = form.quant;
            if cuda {
                s.live.transfer = form.transfer;
            }
            AbSide {
                label: form.label(cuda),
                settings: s,
            }
        };
        let base = self.ingest_settings();
        let (mut a, mut b) = (
            side(&self.settings.ab.a, &base),
            side(&self.settings.ab.b, &base),
        );
        if a.label == b.label {
            a.label = format!("A: {}", a.label);
            b.label = format!("B: {}", b.label);
        }
        self.perf.ab_started();
        let pages = self.settings.ab.pages.max(1);
        if !self.send(Command::AbCompare {
            folder,
            pages,
            a,
            b,
        }) {
            self.perf.ab = AbState::Failed("the engine is not running".into());
        }
    }

    fn export_dir(&self) -> PathBuf {
        self.options
            .export_dir
            .clone()
            .unwrap_or_else(|| pagesight_common::paths::data_dir().join("exports"))
    }

    fn export_name(&self, ext: &str) -> PathBuf {
        self.export_file("runs", ext)
    }

    /// `<export dir>/<what>-<unix seconds>.<ext>`.
    fn export_file(&self, what: &str, ext: &str) -> PathBuf {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.export_dir().join(format!("{what}-{secs}.{ext}"))
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for p in dropped {
            if p.is_dir() {
                self.set_folder(&p);
                self.tab = Tab::Ingest;
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("jsonl"))
            {
                self.perf.run_file = p.display().to_string();
                self.tab = Tab::Performance;
                self.bg.load_runs(p);
            } else {
                self.notify(format!(
                    "dropped {}: drop a folder of PDFs, or a run JSON",
                    p.display()
                ));
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Pagesight");
            ui.separator();
            ui.selectable_value(&mut self.tab, Tab::Ingest, "Corpus / Ingest");
            ui.selectable_value(&mut self.tab, Tab::Search, "Search");
            ui.selectable_value(&mut self.tab, Tab::Performance, "Performance");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let (next, text) = match self.settings.theme {
                    super::settings::Theme::Dark => (super::settings::Theme::Light, "Light theme"),
                    super::settings::Theme::Light => (super::settings::Theme::Dark, "Dark theme"),
                };
                if ui.button(text).clicked() {
                    self.settings.theme = next;
                }
            });
        });
    }

    fn notices_panel(&mut self, ui: &mut egui::Ui) {
        let mut clear = false;
        let last = self.notices.last().expect("called with notices");
        let colour = if last.error {
            ui.visuals().error_fg_color
        } else {
            ui.visuals().text_color()
        };
        // The buttons keep their place on the right; a long message (a path, what to do) wraps.
        egui::Sides::new().shrink_left().wrap().show(
            ui,
            |ui| ui.label(egui::RichText::new(&last.text).color(colour)),
            |ui| {
                if ui.small_button("Dismiss").clicked() {
                    clear = true;
                }
                if self.notices.len() > 1 {
                    ui.menu_button(format!("{} more", self.notices.len() - 1), |ui| {
                        for n in self.notices.iter().rev().skip(1) {
                            ui.label(&n.text);
                        }
                    });
                }
            },
        );
        if clear {
            self.notices.clear();
        }
    }

    fn activity(&self) -> String {
        let mut parts = Vec::new();
        if self.ingest.cost.asking().is_some() {
            // Seen from any view: the run waits for an answer in the Corpus view.
            parts.push(
                "ingest paused after its first batch: Continue or Cancel it in Corpus / Ingest"
                    .into(),
            );
        } else if self.ingest.state.is_active() {
            parts.push(match &self.ingest.progress {
                Some(p) => format!("ingesting {}/{}", p.pages_done, p.pages_total),
                None => "ingest starting".into(),
            });
        }
        if let AbState::Running { sides_done } = self.perf.ab {
            parts.push(format!("A/B side {} of 2", (sides_done + 1).min(2)));
        }
        if self.search.pending.is_some() {
            parts.push("searching".into());
        }
        if let Some(w) = self.watch_activity() {
            parts.push(w);
        }
        parts.join(" · ")
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

/// Crops the screenshot to `rect` (points) and writes it as PNG.
fn save_png_crop(
    image: &egui::ColorImage,
    rect: egui::Rect,
    ppp: f32,
    path: &Path,
) -> Result<(), String> {
    let [w, h] = image.size;
    let x0 = ((rect.min.x * ppp).floor().max(0.0) as usize).min(w);
    let y0 = ((rect.min.y * ppp).floor().max(0.0) as usize).min(h);
    let x1 = ((rect.max.x * ppp).ceil().max(0.0) as usize).min(w);
    let y1 = ((rect.max.y * ppp).ceil().max(0.0) as usize).min(h);
    if x1 <= x0 || y1 <= y0 {
        return Err("the plot is not on screen; scroll it into view and export again".into());
    }
    let mut out = image::RgbaImage::new((x1 - x0) as u32, (y1 - y0) as u32);
    for y in y0..y1 {
        for x in x0..x1 {
            let c = image.pixels[y * w + x].to_srgba_unmultiplied();
            out.put_pixel((x - x0) as u32, (y - y0) as u32, image::Rgba(c));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    }
    let mut png = Vec::new();
    out.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("could not encode the PNG: {e}"))?;
    pagesight_common::fs::write_atomic(path, &png)
        .map_err(|e| format!("could not write the PNG: {e}"))
}

impl eframe::App for PagesightApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let start = Instant::now();
        let ctx = ui.ctx().clone();
        if self.applied_theme != Some(self.settings.theme) {
            ctx.set_theme(self.settings.theme.egui());
            self.applied_theme = Some(self.settings.theme);
        }
        let more_events = self.drain_events();
        for msg in self.bg_rx.try_iter().collect::<Vec<_>>() {
            self.on_ui_msg(msg);
        }
        self.thumbs.poll();
        self.poll_watch();
        self.handle_dropped_files(&ctx);
        self.status.activity = self.activity();

        egui::Panel::top("top-bar").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("status-bar").show(ui, |ui| self.status.show(ui));
        if !self.notices.is_empty() {
            egui::Panel::bottom("notices").show(ui, |ui| self.notices_panel(ui));
        }
        self.check_model();
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Ingest => {
                self.model_panel_ui(&ctx, ui);
                let busy = self
                    .ingest
                    .state
                    .is_active()
                    .then(|| self.ingest.index_in_use.clone())
                    .flatten();
                for a in self.library.show(
                    ui,
                    &mut self.settings.library,
                    &self.settings.folder,
                    busy.as_deref(),
                ) {
                    self.on_library_action(a);
                }
                ui.separator();
                let hint = self
                    .index_path()
                    .map_or("(chosen from the folder)".into(), |p| {
                        p.display().to_string()
                    });
                let cards = self.cards();
                let transfer_blocked =
                    super::transfer_choice::transfer_unavailable(self.status.device.as_ref());
                let start_settings = self.ingest_settings();
                let form = super::corpus_form::FormContext {
                    index_hint: &hint,
                    best_precision: self.best_precision(),
                    cards: &cards,
                    transfer_blocked: transfer_blocked.as_deref(),
                    start_settings: &start_settings,
                    cuda: transfer_blocked.is_none(),
                };
                let blocked = self
                    .model_panel
                    .blocks_start()
                    .then_some("download the model first (the panel above)");
                for a in self.ingest.show(ui, &mut self.settings, &form, blocked) {
                    self.act(&ctx, UserAction::Ingest(a));
                }
            }
            Tab::Search => {
                let ready = self.index_ready();
                for a in self
                    .search
                    .show(ui, &mut self.settings, &mut self.thumbs, ready)
                {
                    self.act(&ctx, UserAction::Search(a));
                }
            }
            Tab::Performance => {
                let running = self.ingest.state.is_active();
                let device = self.status.device.clone();
                for a in self.perf.show(
                    ui,
                    &mut self.settings,
                    device.as_ref(),
                    running,
                    &self.frames,
                ) {
                    self.on_perf_action(&ctx, a);
                }
            }
        });

        // Events left over (budget spent) are drained next frame right away; while work runs the
        // engine's events wake us through the poll below, so an idle window costs nothing.
        if more_events {
            ctx.request_repaint();
        } else if self.ingest.state.is_active()
            || matches!(self.perf.ab, AbState::Running { .. })
            || self.search.pending.is_some()
            || self.model_panel.downloading
        {
            ctx.request_repaint_after(Duration::from_millis(50));
        } else {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        self.frames.record(start.elapsed());
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.settings.store(storage);
    }
}
