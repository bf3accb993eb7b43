//! The Corpus / Ingest view: folder, model and loader choices, start / pause / cancel, progress and
//! the live list of files with their status.

use super::card_choice;
use super::format;
use super::settings::UiSettings;
use egui_extras::{Column, TableBuilder};
use pagesight_engine::event::{CardInfo, FileReport, FileStatus, IngestSummary, Progress};
use pagesight_engine::settings::Precision;
use pagesight_engine::{DType, DeviceChoice, ModelSettings, Quant, QuantScope};
use pagesight_model::hub::{DEFAULT_ADAPTER, DEFAULT_MODEL};
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

    pub fn on_finished(&mut self, summary: IngestSummary) {
        for f in &summary.failures {
            self.on_file(f.clone());
        }
        self.state = RunState::Finished(summary);
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        index_hint: &str,
        // What "best for this device" resolves to now (`PagesightApp::best_precision`).
        best_precision: Precision,
        // The machine's CUDA cards (the engine's `DeviceInfo`; empty until it answers).
        cards: &[CardInfo],
        // Why Start waits (the model is not on disk yet), if it does.
        start_blocked: Option<&str>,
    ) -> Vec<IngestAction> {
        let mut actions = Vec::new();
        let active = self.state.is_active();
        ui.heading("Corpus");
        egui::Grid::new("ingest-form")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                let label = ui.label("Folder");
                ui.horizontal(|ui| {
                    let edit = egui::TextEdit::singleline(&mut settings.folder)
                        .hint_text("folder with your PDFs (or drop it on the window)")
                        .desired_width(420.0);
                    ui.add_enabled(!active, edit).labelled_by(label.id);
                    if ui
                        .add_enabled(!active, egui::Button::new("Browse…"))
                        .clicked()
                    {
                        actions.push(IngestAction::Browse);
                    }
                    let recent = settings.recent_folders.clone();
                    ui.add_enabled_ui(!active && !recent.is_empty(), |ui| {
                        ui.menu_button("Recent", |ui| {
                            for f in recent {
                                if ui.button(f.display().to_string()).clicked() {
                                    settings.folder = f.display().to_string();
                                    ui.close();
                                }
                            }
                        });
                    });
                });
                ui.end_row();

                ui.label("Index");
                ui.label(egui::RichText::new(index_hint).weak());
                ui.end_row();

                let label = ui.label("Model");
                ui.add_enabled_ui(!active, |ui| model_choice(ui, &mut settings.model, label.id));
                ui.end_row();

                ui.label("Device");
                ui.add_enabled_ui(!active, |ui| {
                    ui.horizontal(|ui| {
                        for d in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(0)] {
                            // With several cards the boxes below say which: the button is "cuda".
                            let name = match d {
                                DeviceChoice::Cuda(_) if cards.len() > 1 => "cuda".to_string(),
                                d => d.to_string(),
                            };
                            ui.selectable_value(&mut settings.model.device, d, name);
                        }
                    });
                });
                ui.end_row();

                if card_choice::applies(settings.model.device, cards) {
                    ui.label("Cards");
                    ui.add_enabled_ui(!active, |ui| {
                        card_choice::show(ui, cards, &mut settings.unticked_cards)
                    });
                    ui.end_row();
                }

                ui.label("Precision");
                ui.add_enabled_ui(!active, |ui| {
                    ui.horizontal(|ui| {
                        ui.checkbox(&mut settings.best_precision, "best for this device")
                            .on_hover_text(
                                "bf16 compute with NF4 weights on a CUDA GPU, f32 unquantised on \
                                 the CPU; adding to an existing index, the precision it was made with",
                            );
                        if settings.best_precision {
                            let quant = match best_precision.quant {
                                Quant::None => "unquantised".to_string(),
                                q => format!("{} ({} layers)", q.name(), best_precision.quant_scope.name()),
                            };
                            ui.label(
                                egui::RichText::new(format!("{} compute, {quant}", best_precision.dtype.name())).weak(),
                            );
                        }
                    });
                });
                ui.end_row();

                ui.label("Quantisation");
                ui.add_enabled_ui(!active && !settings.best_precision, |ui| {
                    ui.horizontal(|ui| {
                        for q in [Quant::None, Quant::Nf4, Quant::Q4k] {
                            ui.selectable_value(&mut settings.model.quant, q, q.name());
                        }
                        ui.separator();
                        // The scope means something only when quantising.
                        let quantised = settings.model.quant != Quant::None;
                        ui.add_enabled_ui(quantised, |ui| {
                            for (s, label, hint) in [
                                (
                                    QuantScope::AllLinear,
                                    "all layers",
                                    "language model and vision tower",
                                ),
                                (
                                    QuantScope::LanguageModelOnly,
                                    "LM only",
                                    "the vision tower stays dense",
                                ),
                            ] {
                                ui.selectable_value(&mut settings.model.quant_scope, s, label)
                                    .on_hover_text(hint);
                            }
                        });
                        ui.separator();
                        for d in [DType::F32, DType::Bf16, DType::F16] {
                            ui.selectable_value(&mut settings.model.dtype, d, d.name());
                        }
                    });
                });
                ui.end_row();

                ui.label("Batch / workers");
                ui.add_enabled_ui(!active, |ui| {
                    ui.horizontal(|ui| {
                        ui.add(
                            egui::DragValue::new(&mut settings.batch_size)
                                .range(1..=256)
                                .prefix("batch "),
                        );
                        ui.add(
                            egui::DragValue::new(&mut settings.workers)
                                .range(1..=64)
                                .prefix("workers "),
                        );
                        visual_token_budget(ui, &mut settings.model.max_visual_tokens);
                    });
                });
                ui.end_row();
            });

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
            if ui
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

/// The visual-token budget: the checkpoint's own unless the user sets a number.
fn visual_token_budget(ui: &mut egui::Ui, budget: &mut Option<usize>) {
    let mut own = budget.is_none();
    ui.checkbox(&mut own, "checkpoint's visual tokens")
        .on_hover_text("The page resolution the model was saved with (its preprocessor config)");
    if own {
        *budget = None;
    } else {
        let mut n = budget.unwrap_or(768);
        ui.add(
            egui::DragValue::new(&mut n)
                .range(64..=4096)
                .prefix("max visual tokens "),
        );
        *budget = Some(n);
    }
}

/// What the label of the developer's random models says.
pub const RANDOM_LABEL: &str = "random weights — results are meaningless, for testing";

/// The real model's name in the model choice.
pub const REAL_MODEL_LABEL: &str = "ColQwen2.5 (vidore/colqwen2.5-v0.2)";

/// The model choice: the published ColQwen2.5 (the default), another checkpoint (a folder or a
/// hub id), or — under "developer" — a random model, labelled as meaningless.
fn model_choice(ui: &mut egui::Ui, model: &mut ModelSettings, label: egui::Id) {
    let real = is_real_model(model);
    let random = model.model.starts_with("random:");
    let selected = if real {
        REAL_MODEL_LABEL.to_string()
    } else if random {
        format!("developer: {} ({RANDOM_LABEL})", model.model)
    } else {
        "Other checkpoint".to_string()
    };
    ui.vertical(|ui| {
        egui::ComboBox::from_id_salt("model-choice")
            .selected_text(selected)
            .width(420.0)
            .show_ui(ui, |ui| {
                if ui.selectable_label(real, REAL_MODEL_LABEL).clicked() {
                    set_real_model(model);
                }
                if ui
                    .selectable_label(!real && !random, "Other checkpoint (folder or hub id)")
                    .clicked()
                    && (real || random)
                {
                    model.model.clear();
                    model.adapter = None;
                }
                ui.separator();
                ui.label(egui::RichText::new("developer").weak());
                for r in ["random:tiny", "random:3b"] {
                    if ui
                        .selectable_label(
                            model.model == r,
                            format!("developer: {r} ({RANDOM_LABEL})"),
                        )
                        .clicked()
                    {
                        model.model = r.into();
                        model.adapter = None;
                    }
                }
            })
            .response
            .labelled_by(label);
        if !real && !random {
            ui.add(
                egui::TextEdit::singleline(&mut model.model)
                    .hint_text("snapshot folder or hub id (owner/name)")
                    .desired_width(420.0),
            )
            .labelled_by(label);
        }
        if random {
            ui.label(egui::RichText::new(RANDOM_LABEL).color(ui.visuals().warn_fg_color));
        }
    });
}

/// The published model: the v0.2 adapter on its base.
pub fn is_real_model(m: &ModelSettings) -> bool {
    m.model == DEFAULT_MODEL && m.adapter.as_deref() == Some(std::path::Path::new(DEFAULT_ADAPTER))
}

pub fn set_real_model(m: &mut ModelSettings) {
    m.model = DEFAULT_MODEL.into();
    m.adapter = Some(DEFAULT_ADAPTER.into());
}
