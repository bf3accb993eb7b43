//! How the app reacts to engine events: one match over the `Event` enum, drained each frame by
//! `PagesightApp::drain_events`.

use super::*;
use crate::ui::cost_estimate;
use pagesight_engine::library_search::gather::Answer;
use pagesight_engine::{ab, ingest};

impl PagesightApp {
    pub fn on_event(&mut self, ev: Event) {
        match ev {
            Event::IngestStarted {
                index,
                settings,
                model_note,
                ..
            } => {
                self.ingest.state = RunState::Running;
                // A run the watch started ingests a few changed files in the background: it
                // never stops to ask (the user did not press Start and may not be looking).
                let ask = self.watch.running.is_none()
                    && cost_estimate::runs_on_cpu(&settings, self.status.device.as_ref());
                self.ingest.cost = cost_estimate::CostCheck::for_run(ask);
                self.ingest.index_in_use = Some(index);
                self.ingest.model_note = model_note.clone();
                self.status.model =
                    Some(model_note.unwrap_or_else(|| settings.model.model.clone()));
                self.perf.reset_live(format!(
                    "ingest · batch {} · {}",
                    settings.live.batch_size, settings.live.transfer
                ));
            }
            Event::Discovered {
                files,
                new_or_changed,
                unchanged,
            } => {
                self.ingest.discovered = Some((files, new_or_changed, unchanged));
            }
            Event::FileStatus(report) => self.ingest.on_file(report),
            Event::Progress(p) => {
                // On the CPU, the first batch's estimate: pause the run and ask.
                if self.ingest.cost.on_progress(&p) && self.ingest.state == RunState::Running {
                    self.send(Command::Pause);
                }
                self.ingest.progress = Some(p);
            }
            Event::BatchTimings { pages, stages, .. } => self.ingest.cost.on_batch(pages, &stages),
            Event::Metrics(m) => {
                if m.gpu.is_some() {
                    self.status.gpu = m.gpu.clone();
                }
                self.perf.on_metrics(m);
            }
            Event::PreparingGpuKernels { done, secs } => {
                self.ingest.kernels = Some(if done {
                    format!("GPU kernels ready ({secs:.1} s)")
                } else {
                    format!(
                        "Preparing GPU kernels… {secs:.0} s (first launch compiles them, ~30 s)"
                    )
                });
            }
            Event::Committed { pages_total } => {
                self.ingest.committed_pages = Some(pages_total);
                if let Some(index) = self.ingest.index_in_use.clone() {
                    self.send(Command::Stats { index });
                }
            }
            Event::Paused => self.ingest.state = RunState::Paused,
            Event::Resumed => self.ingest.state = RunState::Running,
            Event::LiveSettingsApplied(l) => self.perf.applied = Some(l),
            Event::IngestFinished(summary) => {
                let failed = summary.files_failed;
                if let Some(index) = self.ingest.index_in_use.clone() {
                    self.ingest_finished_in(&index);
                }
                self.ingest.on_finished(summary);
                if failed > 0 {
                    self.notify(format!(
                        "{failed} file(s) failed; see the file list for the reasons"
                    ));
                }
                if let Some(index) = self.ingest.index_in_use.clone() {
                    self.send(Command::Stats { index });
                }
            }
            Event::AbSideFinished(_) => self.perf.on_ab_side(),
            Event::AbFinished { a, b } => self.perf.on_ab_finished(a, b),
            Event::SearchResults {
                id,
                hits,
                elapsed_ms,
                note,
                scorer,
                timings,
                ..
            } => {
                let answer = Answer {
                    hits,
                    elapsed_ms,
                    note,
                    scorer,
                    timings,
                };
                self.on_search_answer(id, Ok(answer));
            }
            Event::Thumbnail {
                id,
                width,
                height,
                rgba,
                ..
            } => self.thumbs.on_rendered(id, width, height, rgba),
            Event::Stats(s) => {
                if self.index_path().as_ref() == Some(&s.path) {
                    self.status.index = Some(s.clone());
                }
                self.library.stats.insert(s.path.clone(), s);
            }
            Event::Device(d) => self.status.device = Some(d),
            Event::ModelStatus(s) => self.model_panel.on_status(s),
            Event::DownloadProgress(p) => self.model_panel.on_progress(p),
            Event::DownloadFinished { model, .. } => {
                self.model_panel.on_finished();
                self.notify(format!("{model} downloaded; Start can use it"));
            }
            Event::DownloadFailed {
                model,
                message,
                cancelled,
                ..
            } => {
                if !cancelled {
                    self.notify_error(&format!("download of {model}"), &message);
                }
                self.model_panel.on_failed(message, cancelled);
            }
            Event::Notice { message } => self.notify(message),
            Event::Error {
                context,
                message,
                request_id,
            } => self.on_error(context, message, request_id),
        }
    }

    fn on_error(&mut self, context: String, message: String, request_id: Option<u64>) {
        if let Some(id) = request_id {
            if self.thumbs.on_error(id, &message) {
                return; // shown on the card itself
            }
            if self.on_search_answer(id, Err(message.clone())) {
                return;
            }
        }
        // Errors without a request belong to the run in progress. A run that never started ends
        // with any of them; a started one only with the error that says it stopped (others, such
        // as a refused transfer mode, leave it running).
        let ends_ingest = self.ingest.state == RunState::Starting
            || (self.ingest.state.is_active()
                && self
                    .ingest
                    .folder_in_use
                    .as_deref()
                    .map(ingest::failure_context)
                    == Some(context.clone()));
        let ends_ab = match self.perf.ab {
            AbState::Running { sides_done } => {
                (sides_done == 0 && !self.ingest.state.is_active())
                    || context == ab::FAILURE_CONTEXT
            }
            _ => false,
        };
        if ends_ingest {
            self.ingest.state = RunState::Failed(format!("{context}: {message}"));
        } else if ends_ab {
            self.perf.ab = AbState::Failed(format!("{context}: {message}"));
        }
        self.notify_error(&context, &message);
    }
}
