//! What the app does for a user's action: every view hands its actions here (`act`), and
//! `bench gui-frames`' autopilot drives the app the same way.

use super::export::save_png_crop;
use super::*;

impl PagesightApp {
    pub(super) fn on_search_action(&mut self, ctx: &egui::Context, action: SearchAction) {
        match action {
            SearchAction::Search(q) => self.search(q),
            SearchAction::Thumbnail(k) => self.request_thumbnail(k),
            SearchAction::OpenPdf(file, page) => {
                self.bg
                    .spawn(
                        "open-pdf",
                        move || match crate::ui::open_pdf::open_at_page(&file, page) {
                            Ok(m) => UiMsg::Info(m),
                            Err(e) => UiMsg::Failed {
                                context: file.display().to_string(),
                                message: e,
                            },
                        },
                    )
            }
            SearchAction::Reveal(file) => {
                self.bg
                    .spawn("reveal", move || match crate::ui::reveal::reveal(&file) {
                        Ok(m) => UiMsg::Info(m),
                        Err(e) => UiMsg::Failed {
                            context: file.display().to_string(),
                            message: e,
                        },
                    })
            }
            SearchAction::CopyReference(reference) => {
                ctx.copy_text(reference.clone());
                self.notify(format!("copied “{reference}”"));
            }
            SearchAction::Export(format, text) => {
                let path = self.export_file("results", format.extension());
                self.bg.write_file(format.name(), path, text.into_bytes());
            }
        }
    }

    pub(super) fn on_perf_action(&mut self, ctx: &egui::Context, action: PerfAction) {
        match action {
            PerfAction::UpdateLive(l) => {
                self.send(Command::UpdateLive(l));
            }
            PerfAction::RunAb => self.run_ab(),
            PerfAction::LoadRuns(p) => self.bg.load_runs(p),
            PerfAction::BrowseRuns => self.bg.pick_run_file(),
            PerfAction::ExportCsv(csv) => {
                self.bg
                    .write_file("CSV", self.export_name("csv"), csv.into_bytes())
            }
            PerfAction::ExportJson(runs) => {
                match serde_json::to_vec_pretty(&RecordedRuns::new(runs)) {
                    Ok(bytes) => self.bg.write_file("JSON", self.export_name("json"), bytes),
                    Err(e) => {
                        self.notify_error("export", &format!("could not encode the runs: {e}"))
                    }
                }
            }
            PerfAction::ExportPng(rect) => {
                let path = self.export_name("png");
                let bg = self.bg.clone();
                let ppp = ctx.pixels_per_point();
                ctx.request_screenshot(move |image| {
                    bg.spawn("export-png", move || {
                        match save_png_crop(&image, rect, ppp, &path) {
                            Ok(()) => UiMsg::Info(format!("plot written to {}", path.display())),
                            Err(e) => UiMsg::Failed {
                                context: path.display().to_string(),
                                message: e,
                            },
                        }
                    })
                });
            }
        }
    }

    fn on_panel_action(&mut self, action: PanelAction) {
        match action {
            PanelAction::Download => {
                let model = self.settings.model.model.clone();
                let adapter = self.adapter_name();
                if self.send(Command::DownloadModel { model, adapter }) {
                    self.model_panel.downloading = true;
                    self.model_panel.failure = None;
                    self.model_panel.cancelled = false;
                }
            }
            PanelAction::Cancel => {
                self.send(Command::CancelDownload);
            }
        }
    }

    fn on_ingest_action(&mut self, action: IngestAction) {
        match action {
            IngestAction::Start => self.start_ingest(),
            IngestAction::Pause => {
                self.send(Command::Pause);
            }
            IngestAction::Resume => {
                self.send(Command::Resume);
            }
            IngestAction::Cancel => {
                self.send(Command::Cancel);
            }
            IngestAction::Browse => self.bg.pick_folder(),
            IngestAction::Estimate(answer) => {
                self.ingest.cost.settle();
                self.on_ingest_action(match answer {
                    EstimateAnswer::Continue => IngestAction::Resume,
                    EstimateAnswer::Cancel => IngestAction::Cancel,
                });
            }
        }
    }

    /// Does what a user's click asks for: `ui()` hands every view's actions here, and
    /// `bench gui-frames`' autopilot drives the app the same way.
    pub(crate) fn act(&mut self, ctx: &egui::Context, action: UserAction) {
        match action {
            UserAction::Ingest(a) => self.on_ingest_action(a),
            UserAction::Search(a) => self.on_search_action(ctx, a),
            UserAction::ModelPanel(a) => self.on_panel_action(a),
        }
    }
}
