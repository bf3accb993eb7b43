//! The Performance view: live plots of the running ingest or A/B, the transfer-mode toggle (applied
//! on the next batch), the A/B compare form, and the comparison of finished or recorded runs with
//! its summary table and exports.

use super::frame_stats::FrameStats;
use super::plots::{self, SeriesRef};
use super::replica_table;
use super::runs::{self, SummaryRow};
use super::settings::{AbSideForm, UiSettings};
use super::transfer_choice::{self, transfer_unavailable};
use egui_extras::{Column, TableBuilder};
use pagesight_engine::event::{AbSideResult, DeviceInfo, Metrics};
use pagesight_engine::{LiveSettings, Quant, TransferMode};
use std::path::PathBuf;

/// Live series longer than this are thinned (every other old point dropped) to bound memory.
const MAX_LIVE_POINTS: usize = 20_000;

pub enum PerfAction {
    UpdateLive(LiveSettings),
    RunAb,
    LoadRuns(PathBuf),
    BrowseRuns,
    ExportCsv(String),
    ExportJson(Vec<AbSideResult>),
    ExportPng(egui::Rect),
}

pub struct RunEntry {
    pub source: String,
    pub result: AbSideResult,
    pub shown: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AbState {
    Idle,
    Running { sides_done: usize },
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Live,
    Compare,
}

pub struct PerformanceView {
    pub section: Section,
    compare_rect: Option<egui::Rect>,
    pub live_label: String,
    pub live: Vec<Metrics>,
    pub applied: Option<LiveSettings>,
    pub ab: AbState,
    pub runs: Vec<RunEntry>,
    pub run_file: String,
    ab_count: usize,
}

impl Default for PerformanceView {
    fn default() -> Self {
        PerformanceView {
            section: Section::Live,
            compare_rect: None,
            live_label: "live".into(),
            live: Vec::new(),
            applied: None,
            ab: AbState::Idle,
            runs: Vec::new(),
            run_file: String::new(),
            ab_count: 0,
        }
    }
}

impl PerformanceView {
    pub fn reset_live(&mut self, label: String) {
        self.live_label = label;
        self.live.clear();
    }

    pub fn on_metrics(&mut self, m: Metrics) {
        if self.live.len() >= MAX_LIVE_POINTS {
            let keep_from = self.live.len() / 2;
            let mut i = 0;
            self.live.retain(|_| {
                i += 1;
                i > keep_from || i % 2 == 0
            });
        }
        self.live.push(m);
    }

    pub fn ab_started(&mut self) {
        self.ab = AbState::Running { sides_done: 0 };
        self.section = Section::Live;
        self.reset_live("A/B".into());
    }

    pub fn on_ab_side(&mut self) {
        if let AbState::Running { sides_done } = &mut self.ab {
            *sides_done += 1;
        }
    }

    pub fn on_ab_finished(&mut self, a: AbSideResult, b: AbSideResult) {
        self.ab = AbState::Idle;
        self.section = Section::Compare;
        self.ab_count += 1;
        for r in &mut self.runs {
            r.shown = false;
        }
        let source = format!("A/B #{}", self.ab_count);
        self.runs.push(RunEntry {
            source: source.clone(),
            result: a,
            shown: true,
        });
        self.runs.push(RunEntry {
            source,
            result: b,
            shown: true,
        });
    }

    pub fn add_loaded(&mut self, path: &std::path::Path, results: Vec<AbSideResult>) {
        let source = super::format::file_name(path);
        self.section = Section::Compare;
        for r in &mut self.runs {
            r.shown = false;
        }
        for result in results {
            self.runs.push(RunEntry {
                source: source.clone(),
                result,
                shown: true,
            });
        }
    }

    fn shown(&self) -> Vec<&AbSideResult> {
        self.runs
            .iter()
            .filter(|r| r.shown)
            .map(|r| &r.result)
            .collect()
    }

    pub fn summary(&self) -> Vec<SummaryRow> {
        runs::summary_rows(&self.shown())
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        device: Option<&DeviceInfo>,
        ingest_running: bool,
        frames: &FrameStats,
    ) -> Vec<PerfAction> {
        let mut actions = Vec::new();
        let blocked = transfer_unavailable(device);
        self.show_controls(
            ui,
            settings,
            blocked.as_deref(),
            ingest_running,
            frames,
            &mut actions,
        );
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.section, Section::Live, "Live plots");
            ui.selectable_value(&mut self.section, Section::Compare, "A/B and recorded runs");
        });
        ui.separator();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| match self.section {
                Section::Live => {
                    let series = [SeriesRef {
                        label: &self.live_label,
                        series: &self.live,
                        colour: plots::run_colour(0),
                    }];
                    plots::metric_plots(ui, "live", &series, blocked.as_deref());
                    if let Some(last) = self.live.last() {
                        replica_table::show(ui, &last.replicas, last.t);
                    }
                    plots::stage_area(ui, "live", &self.live);
                }
                Section::Compare => {
                    ui.label(egui::RichText::new("A/B compare").heading());
                    self.show_ab_form(ui, settings, device, ingest_running, &mut actions);
                    ui.separator();
                    ui.label(egui::RichText::new("Runs").heading());
                    self.show_runs(ui, &mut actions);
                }
            });
        actions
    }

    /// The transfer-mode toggle and live batch size (both applied on the next batch).
    fn show_controls(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        blocked: Option<&str>,
        ingest_running: bool,
        frames: &FrameStats,
        actions: &mut Vec<PerfAction>,
    ) {
        ui.horizontal(|ui| {
            ui.label("Transfer mode")
                .on_hover_text("applies from the next batch");
            if let Some(mode) = transfer_choice::show(ui, &mut settings.transfer, blocked) {
                actions.push(PerfAction::UpdateLive(LiveSettings {
                    batch_size: settings.batch_size,
                    transfer: mode,
                }));
            }
            ui.separator();
            // Shown as the size Start sends; a size set here is the user's from then on.
            if settings.best_batch {
                settings.batch_size = settings.start_batch(blocked.is_none());
            }
            let batch = ui.add(
                egui::DragValue::new(&mut settings.batch_size)
                    .range(1..=256)
                    .prefix("batch "),
            );
            let committed = batch.drag_stopped() || (batch.changed() && !batch.dragged());
            if batch.changed() {
                settings.best_batch = false;
            }
            if ingest_running && committed {
                actions.push(PerfAction::UpdateLive(LiveSettings {
                    batch_size: settings.batch_size,
                    transfer: settings.transfer,
                }));
            }
        });
        if let Some(why) = blocked {
            ui.label(
                egui::RichText::new(format!("Transfer modes unavailable: {why}"))
                    .color(ui.visuals().warn_fg_color),
            );
        }
        if let Some(a) = &self.applied {
            ui.label(format!(
                "Engine applied: batch {} · {}",
                a.batch_size,
                a.transfer.name()
            ));
        }
        if let (Some(p50), Some(p99)) = (frames.quantile_ms(0.5), frames.quantile_ms(0.99)) {
            ui.label(
                egui::RichText::new(format!(
                    "UI frame time p50 {p50:.2} ms · p99 {p99:.2} ms ({} frames)",
                    frames.len()
                ))
                .color(ui.visuals().weak_text_color()),
            );
        }
    }

    fn show_ab_form(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        device: Option<&DeviceInfo>,
        ingest_running: bool,
        actions: &mut Vec<PerfAction>,
    ) {
        let cuda = transfer_unavailable(device).is_none();
        let busy = ingest_running || matches!(self.ab, AbState::Running { .. });
        ui.horizontal(|ui| {
            let label = ui.label("Pages");
            ui.add_enabled(
                !busy,
                egui::DragValue::new(&mut settings.ab.pages).range(1..=10_000),
            )
            .labelled_by(label.id);
            ui.label(format!(
                "from the corpus folder ({})",
                if settings.folder.is_empty() {
                    "none chosen"
                } else {
                    &settings.folder
                }
            ));
        });
        egui::Grid::new("ab-form")
            .num_columns(2)
            .spacing([16.0, 4.0])
            .show(ui, |ui| {
                ui.label(egui::RichText::new("A").strong());
                ui.add_enabled_ui(!busy, |ui| side_form(ui, "a", &mut settings.ab.a, cuda));
                ui.end_row();
                ui.label(egui::RichText::new("B").strong());
                ui.add_enabled_ui(!busy, |ui| side_form(ui, "b", &mut settings.ab.b, cuda));
                ui.end_row();
            });
        if !cuda {
            ui.label(
                egui::RichText::new("Transfer modes are compared on a CUDA machine; here: batch size, workers, quantisation.")
                    .color(ui.visuals().weak_text_color()),
            );
        }
        ui.horizontal(|ui| {
            let can = !busy && !settings.folder.trim().is_empty();
            if ui.add_enabled(can, egui::Button::new("Run A/B")).clicked() {
                actions.push(PerfAction::RunAb);
            }
            match &self.ab {
                AbState::Idle if ingest_running => {
                    ui.label("an ingest is running; A/B waits for it to finish");
                }
                AbState::Idle => {}
                AbState::Running { sides_done } => {
                    ui.spinner();
                    ui.label(format!("running side {} of 2…", (sides_done + 1).min(2)));
                }
                AbState::Failed(why) => {
                    ui.label(
                        egui::RichText::new(format!("A/B failed: {why}"))
                            .color(ui.visuals().error_fg_color),
                    );
                }
            }
        });
    }

    fn show_runs(&mut self, ui: &mut egui::Ui, actions: &mut Vec<PerfAction>) {
        ui.horizontal(|ui| {
            let label = ui.label("Recorded run file");
            ui.add(
                egui::TextEdit::singleline(&mut self.run_file)
                    .hint_text("bench JSON, exported runs or --json event lines")
                    .desired_width(360.0),
            )
            .labelled_by(label.id);
            if ui
                .add_enabled(!self.run_file.trim().is_empty(), egui::Button::new("Load"))
                .clicked()
            {
                actions.push(PerfAction::LoadRuns(PathBuf::from(self.run_file.trim())));
            }
            if ui.button("Browse…").clicked() {
                actions.push(PerfAction::BrowseRuns);
            }
        });
        if self.runs.is_empty() {
            ui.label("No runs yet: run an A/B above or load a recorded run.");
            return;
        }
        let mut remove = None;
        for (i, r) in self.runs.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                ui.checkbox(&mut r.shown, format!("{} ({})", r.result.label, r.source));
                if ui
                    .small_button("Remove")
                    .on_hover_text("remove this run from the list")
                    .clicked()
                {
                    remove = Some(i);
                }
            });
        }
        if let Some(i) = remove {
            self.runs.remove(i);
        }
        let shown: Vec<&AbSideResult> = self
            .runs
            .iter()
            .filter(|r| r.shown)
            .map(|r| &r.result)
            .collect();
        if shown.is_empty() {
            ui.label("Tick runs to compare them.");
            return;
        }
        let rows = runs::summary_rows(&shown);
        summary_table(ui, &rows);
        ui.horizontal(|ui| {
            if ui.button("Export CSV").clicked() {
                actions.push(PerfAction::ExportCsv(runs::summary_csv(&rows)));
            }
            if ui.button("Export JSON").clicked() {
                actions.push(PerfAction::ExportJson(
                    shown.iter().map(|r| (*r).clone()).collect(),
                ));
            }
            let png = ui.add_enabled(self.compare_rect.is_some(), egui::Button::new("Export PNG"));
            if png.on_hover_text("the plots below, as on screen").clicked() {
                if let Some(rect) = self.compare_rect {
                    actions.push(PerfAction::ExportPng(rect));
                }
            }
        });
        let top = ui.cursor().min;
        let series: Vec<SeriesRef<'_>> = shown
            .iter()
            .enumerate()
            .map(|(i, r)| SeriesRef {
                label: &r.label,
                series: &r.series,
                colour: plots::run_colour(i),
            })
            .collect();
        plots::metric_plots(ui, "compare", &series, None);
        plots::stage_bars(ui, "compare", &rows);
        // Where the plots were drawn this frame: what "Export PNG" crops the next screenshot to.
        self.compare_rect = Some(egui::Rect::from_min_max(
            top,
            egui::pos2(ui.max_rect().right(), ui.cursor().min.y),
        ));
    }
}

fn side_form(ui: &mut egui::Ui, id: &str, side: &mut AbSideForm, cuda: bool) {
    ui.horizontal(|ui| {
        ui.add(
            egui::DragValue::new(&mut side.batch_size)
                .range(1..=256)
                .prefix("batch "),
        );
        ui.add(
            egui::DragValue::new(&mut side.workers)
                .range(1..=64)
                .prefix("workers "),
        );
        egui::ComboBox::new(("ab-quant", id), "quantisation")
            .selected_text(side.quant.name())
            .show_ui(ui, |ui| {
                for q in [Quant::None, Quant::Nf4, Quant::Q4k] {
                    ui.selectable_value(&mut side.quant, q, q.name());
                }
            });
        if cuda {
            egui::ComboBox::new(("ab-transfer", id), "transfer")
                .selected_text(side.transfer.name())
                .show_ui(ui, |ui| {
                    for m in TransferMode::ALL {
                        ui.selectable_value(&mut side.transfer, m, m.name());
                    }
                });
        }
    });
}

fn summary_table(ui: &mut egui::Ui, rows: &[SummaryRow]) {
    ui.label(egui::RichText::new("Summary").strong());
    let row_h = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
    // Inside the view's scroll area: the table scrolls with it rather than on its own.
    TableBuilder::new(ui)
        .id_salt("summary-table")
        .striped(true)
        .vscroll(false)
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::auto().at_least(120.0).resizable(true).clip(true))
        .columns(Column::auto().at_least(60.0), 6)
        .header(row_h, |mut header| {
            for h in [
                "run",
                "pages",
                "wall",
                "pages/s",
                "copy on critical path",
                "GPU busy",
                "speedup",
            ] {
                header.col(|ui| {
                    ui.strong(h);
                });
            }
        })
        .body(|mut body| {
            for r in rows {
                body.row(row_h, |mut row| {
                    let cells = [
                        r.label.clone(),
                        r.pages.to_string(),
                        format!("{:.2} s", r.wall_secs),
                        format!("{:.2}", r.pages_per_sec),
                        format!("{:.3} s", r.copy_critical_secs),
                        r.gpu_busy_pct
                            .map(|b| format!("{b:.1} %"))
                            .unwrap_or_else(|| "n/a".into()),
                        format!("{:.2}×", r.speedup),
                    ];
                    for text in cells {
                        row.col(|ui| {
                            ui.label(text);
                        });
                    }
                });
            }
        });
}
