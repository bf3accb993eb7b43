//! The Corpus / Ingest view: the form (`corpus_form.rs`), start / pause / cancel, the CPU run's
//! first-batch estimate (`cost_estimate.rs`), progress and the live list of files with their
//! status.

use super::corpus_form::{self, FormContext};
use super::cost_estimate::{self, Answer, CostCheck};
use super::format;
use super::settings::UiSettings;
use egui_extras::{Column, TableBuilder};
use pagesight_engine::event::{FileReport, FileStatus, IngestSummary, Progress};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Idle,
    /// `StartIngest` sent, `IngestStarted` not seen yet.
    Starting,
    Running,
    Paused,
    Finished(IngestSummary),
    /// The run could not start or stopped with an error.
    Failed(String),
}

impl RunState {
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            RunState::Starting | RunState::Running | RunState::Paused
        )
    }
}

/// Initial width of the file table's name column (resizable).
const FILE_NAME_WIDTH: f32 = 300.0;

pub enum IngestAction {
    Start,
    Pause,
    Resume,
    Cancel,
    Browse,
    /// The answer to the CPU run's first-batch estimate (its Continue / Cancel).
    Estimate(Answer),
}

pub struct IngestView {
    pub state: RunState,
    pub progress: Option<Progress>,
    pub discovered: Option<(u64, u64, u64)>,
    files: Vec<FileReport>,
    row_of: HashMap<PathBuf, usize>,
    pub model_note: Option<String>,
    pub kernels: Option<String>,
    pub committed_pages: Option<u64>,
    pub index_in_use: Option<PathBuf>,
    /// The folder of the run asked for last.
    pub folder_in_use: Option<PathBuf>,
    /// On the CPU: the first batch's estimate of the whole run, and whether to ask.
    pub cost: CostCheck,
}

impl Default for IngestView {
    fn default() -> Self {
        IngestView {
            state: RunState::Idle,
            progress: None,
            discovered: None,
            files: Vec::new(),
            row_of: HashMap::new(),
            model_note: None,
            kernels: None,
            committed_pages: None,
            index_in_use: None,
            folder_in_use: None,
            cost: CostCheck::default(),
        }
    }
}

impl IngestView {
    /// Clears what the previous run showed; called when a new run is asked for.
    pub fn begin(&mut self, folder: PathBuf, index: PathBuf) {
        *self = IngestView {
            state: RunState::Starting,
            index_in_use: Some(index),
            folder_in_use: Some(folder),
            ..Default::default()
        };
    }

    pub fn on_file(&mut self, report: FileReport) {
        match self.row_of.get(&report.path) {
            Some(&i) => self.files[i] = report,
            None => {
                self.row_of.insert(report.path.clone(), self.files.len());
                self.files.push(report);
            }
        }
    }

    pub fn files(&self) -> &[FileReport] {
        &self.files
    }

    /// The status the run in view last reported for `path`.
    #[cfg(feature = "dev-tools")]
    pub fn status_of(&self, path: &std::path::Path) -> Option<&FileStatus> {
        self.row_of.get(path).map(|&i| &self.files[i].status)
    }

    pub fn on_finished(&mut self, summary: IngestSummary) {
        self.cost.settle();
        for f in &summary.failures {
            self.on_file(f.clone());
        }
        self.state = RunState::Finished(summary);
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        form: &FormContext<'_>,
        // Why Start waits (the model is not on disk yet), if it does.
        start_blocked: Option<&str>,
    ) -> Vec<IngestAction> {
        let mut actions = Vec::new();
        let active = self.state.is_active();
        ui.heading("Corpus");
        if corpus_form::show(ui, settings, form, active) {
            actions.push(IngestAction::Browse);
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let can_start =
                !active && !settings.folder.trim().is_empty() && start_blocked.is_none();
            let start = ui.add_enabled(can_start, egui::Button::new("Start ingest"));
            if let Some(why) = start_blocked {
                start.on_disabled_hover_text(why);
            } else if start.clicked() {
                actions.push(IngestAction::Start);
            }
            match self.state {
                // The first batch's estimate below holds the run's buttons.
                _ if self.cost.asking().is_some() => {}
                RunState::Paused => {
                    if ui.button("Resume").clicked() {
                        actions.push(IngestAction::Resume);
                    }
                }
                _ => {
                    if ui
                        .add_enabled(self.state == RunState::Running, egui::Button::new("Pause"))
                        .clicked()
                    {
                        actions.push(IngestAction::Pause);
                    }
                }
            }
            if self.cost.asking().is_none()
                && ui
                    .add_enabled(active, egui::Button::new("Cancel"))
                    .clicked()
            {
                actions.push(IngestAction::Cancel);
            }
            // A failure's reason can be long (paths it looked in, what to do): wrap it.
            let colour = match self.state {
                RunState::Failed(_) => ui.visuals().error_fg_color,
                _ => ui.visuals().text_color(),
            };
            ui.add(egui::Label::new(egui::RichText::new(self.state_text()).color(colour)).wrap());
        });
        if let Some(estimate) = self.cost.asking() {
            if let Some(answer) = cost_estimate::show(ui, estimate) {
                actions.push(IngestAction::Estimate(answer));
            }
        }
        if let Some(note) = &self.model_note {
            ui.label(egui::RichText::new(note).italics());
        }
        if let Some(k) = &self.kernels {
            ui.label(k);
        }
        self.show_progress(ui);
        ui.separator();
        self.show_files(ui);
        actions
    }

    fn state_text(&self) -> String {
        match &self.state {
            RunState::Idle => "Idle".into(),
            RunState::Starting => "Starting…".into(),
            RunState::Running => "Running".into(),
            RunState::Paused => "Paused".into(),
            RunState::Finished(s) if s.cancelled => {
                format!("Cancelled after {} pages", s.pages_ingested)
            }
            RunState::Finished(s) => format!(
                "Done: {} pages in {} ({:.2} pages/s); {} files done, {} failed, {} unchanged",
                s.pages_ingested,
                format::duration(s.wall_secs),
                s.pages_per_sec,
                s.files_done,
                s.files_failed,
                s.files_skipped
            ),
            RunState::Failed(why) => format!("Failed: {why}"),
        }
    }

    fn show_progress(&self, ui: &mut egui::Ui) {
        let Some(p) = &self.progress else {
            if let Some((files, new, unchanged)) = self.discovered {
                ui.label(format!(
                    "Found {files} PDFs: {new} new or changed, {unchanged} unchanged"
                ));
            }
            return;
        };
        let frac = if p.pages_total > 0 {
            p.pages_done as f32 / p.pages_total as f32
        } else {
            0.0
        };
        let mut text = format!(
            "{}/{} pages · {}/{} files · {:.2} pages/s",
            p.pages_done, p.pages_total, p.files_done, p.files_total, p.pages_per_sec
        );
        // A finished run's last estimate is history, not a forecast.
        if self.state.is_active() {
            let eta = p.eta_secs.map(format::duration);
            text += &format!(" · ETA {}", eta.as_deref().unwrap_or("–"));
        }
        ui.add(egui::ProgressBar::new(frac.clamp(0.0, 1.0)).text(text));
        if let Some((files, new, unchanged)) = self.discovered {
            ui.label(format!(
                "Found {files} PDFs: {new} new or changed, {unchanged} unchanged"
            ));
        }
    }

    fn show_files(&self, ui: &mut egui::Ui) {
        ui.label(egui::RichText::new(format!("Files ({})", self.files.len())).strong());
        if self.files.is_empty() && !self.state.is_active() {
            ui.weak("Each PDF of the folder appears here with its status once an ingest runs.");
        }
        let row_h = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
        // Only the visible rows are laid out (`rows`), so a corpus of thousands of files costs no
        // frame time; the name column is resizable and clips, the status takes the rest.
        TableBuilder::new(ui)
            .id_salt("ingest-files")
            .striped(true)
            .auto_shrink([false, false])
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
            .column(
                Column::initial(FILE_NAME_WIDTH)
                    .at_least(80.0)
                    .resizable(true)
                    .clip(true),
            )
            .column(Column::remainder())
            .header(row_h, |mut header| {
                header.col(|ui| {
                    ui.strong("File");
                });
                header.col(|ui| {
                    ui.strong("Status");
                });
            })
            .body(|body| {
                body.rows(row_h, self.files.len(), |mut row| {
                    let f = &self.files[row.index()];
                    row.col(|ui| {
                        ui.add(egui::Label::new(format::file_name(&f.path)).truncate())
                            .on_hover_text(f.path.display().to_string());
                    });
                    row.col(|ui| {
                        let (text, colour) = status_text(&f.status, ui.visuals());
                        ui.label(egui::RichText::new(text).color(colour));
                    });
                });
            });
    }
}

/// A file's status in words, and its colour.
pub fn status_text(s: &FileStatus, v: &egui::Visuals) -> (String, egui::Color32) {
    let ok = if v.dark_mode {
        egui::Color32::LIGHT_GREEN
    } else {
        egui::Color32::DARK_GREEN
    };
    match s {
        FileStatus::Queued => ("queued".into(), v.weak_text_color()),
        FileStatus::InProgress {
            pages_done,
            pages_total,
        } => (
            format!("in progress {pages_done}/{pages_total}"),
            v.strong_text_color(),
        ),
        FileStatus::Done { pages } => (format!("done ({pages} pages)"), ok),
        FileStatus::Failed {
            page: Some(p),
            reason,
        } => (format!("failed at page {p}: {reason}"), v.error_fg_color),
        FileStatus::Failed { page: None, reason } => {
            (format!("failed: {reason}"), v.error_fg_color)
        }
        FileStatus::SkippedUnchanged { pages } => (
            format!("unchanged ({pages} pages), skipped"),
            v.weak_text_color(),
        ),
        FileStatus::Duplicate { of } => (
            format!(
                "same content as {}: indexed once, under that file",
                of.display()
            ),
            v.weak_text_color(),
        ),
        FileStatus::Removed => ("removed from the index".into(), v.weak_text_color()),
    }
}
