//! The model panel of the Corpus / Ingest view: whether the chosen model is on disk (the engine
//! answers `CheckModel` from the Hugging Face cache, then with the download size from the hub)
//! and, when it is not, its download — size, a Download button, a progress bar with speed and
//! time left, Cancel, and Resume after a cancel or a restart (the partial files are kept in the
//! cache). Everything arrives as engine events: the panel never waits.

use super::format;
use pagesight_engine::event::ModelStatus;
use pagesight_engine::Command;
use pagesight_model::hub::DownloadProgress;

pub enum PanelAction {
    Download,
    Cancel,
}

#[derive(Default)]
pub struct ModelPanel {
    /// The model (and adapter) the last `CheckModel` asked about.
    checked: Option<(String, Option<String>)>,
    /// Ask again about the same model (a download ended).
    stale: bool,
    pub status: Option<ModelStatus>,
    pub downloading: bool,
    pub progress: Option<DownloadProgress>,
    /// Why the last download stopped (not a cancel).
    pub failure: Option<String>,
    /// The last download was cancelled (its files are kept: Resume continues).
    pub cancelled: bool,
}

impl ModelPanel {
    /// A `CheckModel` when the choice differs from the one last asked about.
    pub fn check_if_changed(&mut self, model: &str, adapter: Option<&str>) -> Option<Command> {
        let now = (
            model.trim().to_string(),
            adapter.map(|a| a.trim().to_string()),
        );
        let same = self.checked.as_ref() == Some(&now);
        if now.0.is_empty() || (same && !self.stale) || self.downloading {
            return None;
        }
        if !same {
            // Another model: what the panel said was about the last one.
            self.status = None;
            self.failure = None;
            self.cancelled = false;
            self.progress = None;
        }
        self.checked = Some(now.clone());
        self.stale = false;
        Some(Command::CheckModel {
            model: now.0,
            adapter: now.1,
        })
    }

    /// Asks again on the next frame (after a download finished or failed).
    pub fn recheck(&mut self) {
        self.stale = true;
    }

    pub fn on_status(&mut self, s: ModelStatus) {
        let current = self.checked.as_ref() == Some(&(s.model.clone(), s.adapter.clone()));
        if current {
            self.status = Some(s);
        }
    }

    pub fn on_progress(&mut self, p: DownloadProgress) {
        self.downloading = true;
        self.progress = Some(p);
    }

    pub fn on_finished(&mut self) {
        self.downloading = false;
        self.progress = None;
        self.failure = None;
        self.cancelled = false;
        self.recheck();
    }

    pub fn on_failed(&mut self, message: String, cancelled: bool) {
        self.downloading = false;
        self.cancelled = cancelled;
        self.failure = (!cancelled).then_some(message);
        // What is kept now counts as present: ask again for the size line.
        self.recheck();
    }

    /// Start is held back while the chosen model is known not to be on disk.
    pub fn blocks_start(&self) -> bool {
        self.downloading || self.status.as_ref().is_some_and(|s| !s.on_disk)
    }

    fn visible(&self) -> bool {
        self.blocks_start() || self.failure.is_some() || self.cancelled
    }

    pub fn show(&mut self, ui: &mut egui::Ui, name: &str) -> Option<PanelAction> {
        if !self.visible() {
            return None;
        }
        let mut action = None;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            if self.downloading {
                ui.strong(format!("Downloading {name}"));
            } else {
                ui.strong(format!("{name} is not on disk"));
            }
            if let Some(s) = &self.status {
                ui.label(format!(
                    "Needed: {} — into the Hugging Face cache {}",
                    s.missing.join(", "),
                    s.cache_dir.display()
                ));
                match (s.total_bytes, &s.size_note) {
                    (Some(total), _) if s.present_bytes > 0 => {
                        ui.label(format!(
                            "Download size {} ({} already there)",
                            format::bytes(total),
                            format::bytes(s.present_bytes)
                        ));
                    }
                    (Some(total), _) => {
                        ui.label(format!("Download size {}", format::bytes(total)));
                    }
                    (None, Some(note)) => {
                        ui.add(
                            egui::Label::new(
                                egui::RichText::new(note).color(ui.visuals().warn_fg_color),
                            )
                            .wrap(),
                        );
                    }
                    (None, None) => {
                        ui.label(
                            egui::RichText::new("asking the hub for the download size…").weak(),
                        );
                    }
                }
            }
            if let Some(p) = &self.progress {
                let speed = if p.bytes_per_sec > 0.0 {
                    format!("{}/s", format::bytes(p.bytes_per_sec as u64))
                } else {
                    "measuring speed".into()
                };
                let eta = p.eta_secs.map_or(String::new(), |s| {
                    format!(" · {} left", format::duration(s))
                });
                let text = format!(
                    "{} of {} · {speed}{eta} · {} ({} of {})",
                    format::bytes(p.done),
                    format::bytes(p.total),
                    p.file,
                    format::bytes(p.file_done),
                    format::bytes(p.file_total)
                );
                ui.add(
                    egui::ProgressBar::new(p.fraction())
                        .text(format!("{:.0} %", p.fraction() * 100.0)),
                );
                ui.label(text);
            }
            if self.cancelled {
                ui.label(
                    "Download cancelled: what was downloaded is kept; Resume continues from there.",
                );
            }
            if let Some(f) = &self.failure {
                ui.add(
                    egui::Label::new(egui::RichText::new(f).color(ui.visuals().error_fg_color))
                        .wrap(),
                );
            }
            ui.horizontal(|ui| {
                if self.downloading {
                    if ui.button("Cancel download").clicked() {
                        action = Some(PanelAction::Cancel);
                    }
                } else {
                    let resume = self.cancelled
                        || self.failure.is_some()
                        || self.status.as_ref().is_some_and(|s| s.present_bytes > 0);
                    let label = match (resume, self.status.as_ref().and_then(|s| s.total_bytes)) {
                        (true, _) => "Resume download".to_string(),
                        (false, Some(t)) => format!("Download ({})", format::bytes(t)),
                        (false, None) => "Download".to_string(),
                    };
                    if ui.button(label).clicked() {
                        action = Some(PanelAction::Download);
                    }
                }
            });
        });
        action
    }
}
