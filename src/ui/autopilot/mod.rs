//! The autopilot of `pagesight bench gui-frames`: an `eframe::App` around the real app that,
//! frame after frame, does what a user would — waits idle, presses Start on a folder (answers the
//! CPU run's first-batch estimate with Continue), drops new PDFs into the watched folder while
//! the ingest runs and after it, downloads a model from the hub through the model panel, and
//! searches (each mode in turn, a result opened in the large view) — through the app's own
//! action handlers (`PagesightApp::act`), never the engine's channels. After each frame it takes
//! the app's own frame time (the last `FrameStats` sample: the time inside `ui()`) into the
//! current phase's figures; while the scenario runs it asks for a frame every 1/fps seconds.
//! When the last phase ends it makes the report and, unless told otherwise, closes the window.

pub mod phases;

use super::app::UserAction;
use super::ingest::IngestAction;
use super::model_panel::PanelAction;
use super::search::SearchAction;
use super::{PagesightApp, RunState, Tab};
use crate::ui::cost_estimate::Answer;
use pagesight_engine::event::FileStatus;
use pagesight_engine::{ModelSettings, SearchMode};
pub use phases::{FrameSample, Phase, PhaseFrames, PhaseRow, ScenarioReport, GOAL_P99_MS};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A PDF the scenario writes into the watched folder.
#[derive(Clone, Debug)]
pub struct NewPdf {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What the autopilot does.
#[derive(Clone, Debug)]
pub struct ScenarioPlan {
    /// The folder it ingests (already the form's folder and a watched corpus of the library);
    /// the new PDFs are written into it.
    pub folder: PathBuf,
    /// How long the idle phase lasts, and the least time the search phase keeps searching.
    pub phase_secs: Duration,
    /// Written while the ingest runs (watch events during an ingest; their ingest is queued).
    pub during_ingest: Vec<NewPdf>,
    /// Written once it finished (the watch phase's own events and ingest).
    pub after_ingest: Vec<NewPdf>,
    /// A hub model id to download from the hub the environment names; None: no download phase.
    pub download: Option<String>,
    /// Searched in turn, the modes taking turns too; each at least once.
    pub queries: Vec<String>,
    /// Frames asked for per second while the scenario runs (0: one right after another).
    pub fps: f64,
    /// During the ingest and the watch, the view changes between Corpus / Ingest and Performance
    /// (live plots) this often.
    pub view_every: Duration,
    /// The longest a phase that waits for work (ingest, watch, download, one search) may take;
    /// past it the scenario notes it and goes on.
    pub phase_timeout: Duration,
    /// Close the window when done (the benchmark); a test harness keeps it.
    pub close_when_done: bool,
}

/// What a search step is waiting for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SearchStep {
    /// Ready to send the next query.
    Next,
    /// Sent; waiting for the answer.
    Sent(Instant),
    /// Answered; waiting for the grid's thumbnails.
    Answered(Instant),
    /// A result is open in the large view.
    Large(Instant),
}

pub struct Autopilot {
    app: PagesightApp,
    plan: ScenarioPlan,
    /// The current phase; None once done.
    phase: Option<Phase>,
    began: Option<Instant>,
    phase_began: Instant,
    frame_began: Instant,
    frames: PhaseFrames,
    notes: Vec<String>,
    completed: bool,
    writes: Vec<JoinHandle<Result<(), String>>>,
    dropped_during: bool,
    /// PDFs in the folder before the scenario wrote any.
    initial_pdfs: usize,
    /// The new PDFs some run reported done (or failed) so far.
    new_seen: HashSet<String>,
    view_changed: Instant,
    estimate_answered: bool,
    saved_model: Option<ModelSettings>,
    download_clicked: Option<Instant>,
    download_bytes: Option<u64>,
    search_step: SearchStep,
    queries_sent: usize,
    searches: usize,
    renderer: Option<String>,
    report: Option<ScenarioReport>,
    shared: Option<Arc<Mutex<Option<ScenarioReport>>>>,
}

impl Autopilot {
    pub fn new(app: PagesightApp, plan: ScenarioPlan) -> Autopilot {
        let now = Instant::now();
        let initial_pdfs = std::fs::read_dir(&plan.folder).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| pagesight_loader::discover::is_pdf_name(&e.path()))
                .count()
        });
        Autopilot {
            app,
            plan,
            phase: Some(Phase::Idle),
            began: None,
            phase_began: now,
            frame_began: now,
            frames: PhaseFrames::default(),
            notes: Vec::new(),
            completed: true,
            writes: Vec::new(),
            dropped_during: false,
            initial_pdfs,
            new_seen: HashSet::new(),
            view_changed: now,
            estimate_answered: false,
            saved_model: None,
            download_clicked: None,
            download_bytes: None,
            search_step: SearchStep::Next,
            queries_sent: 0,
            searches: 0,
            renderer: None,
            report: None,
            shared: None,
        }
    }

    /// The report also goes into `slot` when the scenario ends (the window's owner reads it
    /// after the window closed).
    pub fn report_into(mut self, slot: Arc<Mutex<Option<ScenarioReport>>>) -> Autopilot {
        self.shared = Some(slot);
        self
    }

    pub fn app(&self) -> &PagesightApp {
        &self.app
    }

    /// The phase running now; None once the scenario ended.
    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    pub fn report(&self) -> Option<&ScenarioReport> {
        self.report.as_ref()
    }

    /// Frames recorded so far, by phase.
    pub fn frames(&self) -> &PhaseFrames {
        &self.frames
    }

    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        tracing::info!("autopilot: {text}");
        self.notes.push(text);
    }

    fn in_phase(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.phase_began)
    }

    /// Ends the current phase and starts `next` (None: the scenario is over).
    fn enter(&mut self, next: Option<Phase>, now: Instant) {
        if let Some(p) = self.phase {
            self.frames.add_time(p, self.in_phase(now));
        }
        self.phase = next;
        self.phase_began = now;
        self.view_changed = now;
        if let Some(p) = next {
            tracing::info!("autopilot: phase {}", p.name());
        }
    }

    /// Gives up on the phase that ran past its time.
    fn timed_out(&mut self, what: &str, now: Instant) -> bool {
        if self.in_phase(now) < self.plan.phase_timeout {
            return false;
        }
        let phase = self.phase.map_or("?", Phase::name);
        self.note(format!(
            "{phase}: {what} did not happen within {:.0} s; going on",
            self.plan.phase_timeout.as_secs_f64()
        ));
        self.completed = false;
        true
    }

    /// Writes `pdfs` into the folder on a thread of their own, as another program would.
    fn write_pdfs(&mut self, pdfs: Vec<NewPdf>) {
        if pdfs.is_empty() {
            return;
        }
        let folder = self.plan.folder.clone();
        self.writes.push(std::thread::spawn(move || {
            for p in pdfs {
                let path = folder.join(&p.name);
                std::fs::write(&path, &p.bytes)
                    .map_err(|e| format!("could not write {}: {e}", path.display()))?;
            }
            Ok(())
        }));
    }

    /// Whether every write finished (noting the failed ones).
    fn writes_done(&mut self) -> bool {
        if self.writes.iter().any(|w| !w.is_finished()) {
            return false;
        }
        for w in std::mem::take(&mut self.writes) {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.note(e),
                Err(_) => self.note("a PDF writer thread panicked"),
            }
        }
        true
    }

    /// Between Corpus / Ingest and Performance every `view_every`.
    fn turn_views(&mut self, now: Instant) {
        if now.saturating_duration_since(self.view_changed) >= self.plan.view_every {
            self.app.tab = match self.app.tab {
                Tab::Ingest => Tab::Performance,
                _ => Tab::Ingest,
            };
            self.view_changed = now;
        }
    }

    /// The index of the scenario's corpus, and what the app last heard it holds.
    fn index_stats(&self) -> Option<&pagesight_engine::event::IndexStats> {
        let at = self.app.settings.corpus_of(&self.plan.folder)?;
        self.app
            .library
            .stats
            .get(&self.app.settings.library[at].index)
    }

    /// Notes the new PDFs the run in view reports done (or failed): a run's list is cleared
    /// when the next starts, so it is read every frame.
    fn track_new_files(&mut self) {
        for p in self
            .plan
            .during_ingest
            .iter()
            .chain(&self.plan.after_ingest)
        {
            if self.new_seen.contains(&p.name) {
                continue;
            }
            let status = self.app.ingest.status_of(&self.plan.folder.join(&p.name));
            if matches!(
                status,
                Some(
                    FileStatus::Done { .. }
                        | FileStatus::Failed { .. }
                        | FileStatus::Duplicate { .. }
                        | FileStatus::SkippedUnchanged { .. }
                )
            ) {
                self.new_seen.insert(p.name.clone());
            }
        }
    }

    /// Every new PDF was ingested: each seen done, or the index holds as many files as the
    /// folder now has PDFs (a run's list can be replaced by the next before a frame shows it).
    fn new_files_ingested(&self) -> bool {
        let new = self.plan.during_ingest.len() + self.plan.after_ingest.len();
        self.new_seen.len() == new
            || self
                .index_stats()
                .is_some_and(|s| s.files >= (self.initial_pdfs + new) as u64)
    }

    /// One step of the scenario, after the app drew a frame.
    fn drive(&mut self, ctx: &egui::Context, phase: Phase, now: Instant) {
        match phase {
            Phase::Idle => self.idle(ctx, now),
            Phase::Ingest => self.ingest(ctx, now),
            Phase::Watch => self.watch(now),
            Phase::Download => self.download(ctx, now),
            Phase::Search => self.search(ctx, now),
        }
    }

    fn idle(&mut self, ctx: &egui::Context, now: Instant) {
        self.app.tab = Tab::Ingest;
        if self.in_phase(now) < self.plan.phase_secs {
            return;
        }
        // The status bar names the device before a user would press Start.
        if self.app.status.device.is_none() && !self.timed_out("the device report", now) {
            return;
        }
        if self.app.model_panel.blocks_start() {
            self.note("Start is held back: the chosen model is not on disk");
        }
        self.app.act(ctx, UserAction::Ingest(IngestAction::Start));
        self.enter(Some(Phase::Ingest), now);
    }

    fn ingest(&mut self, ctx: &egui::Context, now: Instant) {
        self.track_new_files();
        if self.app.ingest.cost.asking().is_some() && !self.estimate_answered {
            // What the user reads and answers: the first batch's estimate of the whole run.
            self.estimate_answered = true;
            self.note(
                "the CPU run paused after its first batch with its estimate; answered Continue",
            );
            self.app.act(
                ctx,
                UserAction::Ingest(IngestAction::Estimate(Answer::Continue)),
            );
        }
        let started_pages = self
            .app
            .ingest
            .progress
            .as_ref()
            .is_some_and(|p| p.pages_done > 0);
        if !self.dropped_during && (started_pages || self.in_phase(now) >= Duration::from_secs(5)) {
            self.dropped_during = true;
            let pdfs = self.plan.during_ingest.clone();
            self.write_pdfs(pdfs);
        }
        self.turn_views(now);
        // The user's run is over once it is not running, or once the watch's queued ingest
        // took its place (the app starts that in the frame the run ends).
        let over = !self.app.ingest.state.is_active() || self.app.watch_ingest_running();
        if over {
            match &self.app.ingest.state {
                RunState::Failed(why) => {
                    let why = why.clone();
                    self.note(format!("ingest failed: {why}"));
                    self.completed = false;
                }
                RunState::Finished(s) => {
                    let text = format!(
                        "ingest: {} pages of {} files in {:.1} s ({:.2} pages/s)",
                        s.pages_ingested, s.files_done, s.wall_secs, s.pages_per_sec
                    );
                    self.note(text);
                }
                _ => self.note("ingest finished; the watch's queued ingest started at once"),
            }
            if !self.dropped_during {
                self.dropped_during = true;
                let pdfs = self.plan.during_ingest.clone();
                self.write_pdfs(pdfs);
            }
            let pdfs = self.plan.after_ingest.clone();
            self.write_pdfs(pdfs);
            self.enter(Some(Phase::Watch), now);
        } else if self.timed_out("the end of the ingest", now) {
            self.app.act(ctx, UserAction::Ingest(IngestAction::Cancel));
            self.enter(Some(Phase::Watch), now);
        }
    }

    fn watch(&mut self, now: Instant) {
        self.track_new_files();
        self.turn_views(now);
        let settled = self.writes_done()
            && self.new_files_ingested()
            && !self.app.ingest.state.is_active()
            && self.app.watch_queued() == 0;
        if settled || self.timed_out("the watch's ingest of the new PDFs", now) {
            let next = if self.plan.download.is_some() {
                Phase::Download
            } else {
                self.note("download: skipped (no hub to download from)");
                Phase::Search
            };
            self.enter(Some(next), now);
            if next == Phase::Download {
                self.begin_download();
            }
        }
    }

    /// The user picks "Other checkpoint" and types the hub id; the model panel asks the engine
    /// whether it is on disk.
    fn begin_download(&mut self) {
        self.app.tab = Tab::Ingest;
        self.saved_model = Some(self.app.settings.model.clone());
        if let Some(id) = &self.plan.download {
            self.app.settings.model.model = id.clone();
            self.app.settings.model.adapter = None;
        }
    }

    fn end_download(&mut self, now: Instant) {
        if let Some(m) = self.saved_model.take() {
            self.app.settings.model = m;
        }
        self.app.tab = Tab::Search;
        self.enter(Some(Phase::Search), now);
    }

    fn download(&mut self, ctx: &egui::Context, now: Instant) {
        if let Some(p) = &self.app.model_panel.progress {
            self.download_bytes = Some(p.done);
        }
        let Some(clicked) = self.download_clicked else {
            let Some(status) = self.app.model_panel.status.clone() else {
                if self.timed_out("the model check", now) {
                    self.end_download(now);
                }
                return;
            };
            if status.on_disk {
                self.note("download: the model was already on disk");
                self.end_download(now);
                return;
            }
            // The panel shows the download size once the hub answered; a user clicks then.
            let sized = status.total_bytes.is_some() || status.size_note.is_some();
            if sized || self.in_phase(now) >= Duration::from_secs(5) {
                self.app
                    .act(ctx, UserAction::ModelPanel(PanelAction::Download));
                self.download_clicked = Some(now);
            }
            return;
        };
        let panel = &self.app.model_panel;
        if !panel.downloading {
            if let Some(f) = panel.failure.clone() {
                self.note(format!("download failed: {f}"));
                self.completed = false;
            } else if panel.cancelled {
                self.note("download: cancelled");
                self.completed = false;
            } else {
                let text = format!(
                    "download: {} in {:.1} s",
                    self.download_bytes
                        .map_or("?".to_string(), crate::ui::format::bytes),
                    now.saturating_duration_since(clicked).as_secs_f64()
                );
                self.note(text);
            }
            self.end_download(now);
        } else if self.timed_out("the end of the download", now) {
            self.app
                .act(ctx, UserAction::ModelPanel(PanelAction::Cancel));
            self.end_download(now);
        }
    }

    fn search(&mut self, ctx: &egui::Context, now: Instant) {
        self.app.tab = Tab::Search;
        match self.search_step {
            SearchStep::Next => {
                let all_asked = self.queries_sent >= self.plan.queries.len();
                if self.plan.queries.is_empty()
                    || (all_asked && self.in_phase(now) >= self.plan.phase_secs)
                {
                    self.finish(ctx, now);
                    return;
                }
                let q = self.plan.queries[self.queries_sent % self.plan.queries.len()].clone();
                self.app.settings.search_mode =
                    SearchMode::ALL[self.queries_sent % SearchMode::ALL.len()];
                self.app.search.query = q.clone();
                self.app
                    .act(ctx, UserAction::Search(SearchAction::Search(q)));
                self.queries_sent += 1;
                self.search_step = SearchStep::Sent(now);
            }
            SearchStep::Sent(at) => {
                if self.app.search.pending.is_none() {
                    self.searches += 1;
                    if let Some(e) = self.app.search.error.clone() {
                        self.note(format!("search failed: {e}"));
                        self.completed = false;
                    }
                    self.search_step = SearchStep::Answered(now);
                } else if now.saturating_duration_since(at) > self.plan.phase_timeout {
                    self.note("search: no answer in time");
                    self.completed = false;
                    self.finish(ctx, now);
                }
            }
            SearchStep::Answered(at) => {
                let thumbs_in = self.app.thumbnails().outcomes().pending == 0;
                if thumbs_in || now.saturating_duration_since(at) > Duration::from_secs(5) {
                    // A click on the first result opens the large view with its heatmap.
                    let first = self.app.search.visible().first().copied();
                    match first {
                        Some(i) => {
                            self.app.search.selected = Some(i);
                            self.app.search.large_open = true;
                            self.search_step = SearchStep::Large(now);
                        }
                        None => self.search_step = SearchStep::Next,
                    }
                }
            }
            SearchStep::Large(at) => {
                if now.saturating_duration_since(at) >= Duration::from_millis(1500) {
                    // Esc closes it.
                    self.app.search.large_open = false;
                    self.search_step = SearchStep::Next;
                }
            }
        }
    }

    /// Ends the scenario: the report, and the window closes.
    fn finish(&mut self, ctx: &egui::Context, now: Instant) {
        self.enter(None, now);
        let mut report = ScenarioReport::new(
            &self.frames,
            self.completed,
            std::mem::take(&mut self.notes),
        );
        if let Some(s) = self.index_stats() {
            report.files_indexed = Some(s.files);
            report.pages_indexed = Some(s.pages);
        }
        report.searches = self.searches;
        report.renderer = self.renderer.clone();
        report.download_bytes = self.download_bytes;
        if let Some(slot) = &self.shared {
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(report.clone());
            }
        }
        self.report = Some(report);
        if self.plan.close_when_done {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    fn view_name(&self) -> &'static str {
        match self.app.tab {
            Tab::Ingest => "ingest",
            Tab::Search => "search",
            Tab::Performance => "performance",
        }
    }

    /// After the app's frame: its time into the phase's figures, a step of the scenario, and
    /// the next frame asked for.
    fn after_frame(&mut self, ctx: &egui::Context) {
        let Some(phase) = self.phase else { return };
        let now = Instant::now();
        let began = match self.began {
            Some(b) => b,
            None => {
                // The first frame starts the idle phase.
                self.began = Some(now);
                self.phase_began = now;
                now
            }
        };
        if let Some(d) = self.app.frame_stats().last() {
            let view = self.view_name();
            self.frames
                .record(phase, view, now.saturating_duration_since(began), d);
        }
        self.drive(ctx, phase, now);
        if self.phase.is_none() {
            return;
        }
        if self.plan.fps > 0.0 {
            let next = self.frame_began + Duration::from_secs_f64(1.0 / self.plan.fps);
            ctx.request_repaint_after(next.saturating_duration_since(Instant::now()));
        } else {
            ctx.request_repaint();
        }
    }
}

impl eframe::App for Autopilot {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        if self.renderer.is_none() {
            if let Some(gl) = frame.gl() {
                use eframe::glow::HasContext as _;
                // SAFETY: the window's GL context is current while its frame is drawn, and
                // RENDERER is a valid string parameter of every GL version.
                let name = unsafe { gl.get_parameter_string(eframe::glow::RENDERER) };
                self.renderer = Some(name);
            }
        }
        self.frame_began = Instant::now();
        let ctx = ui.ctx().clone();
        self.app.ui(ui, frame);
        self.after_frame(&ctx);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.app.save(storage);
    }
}
