//! Model downloads for the app: `Command::DownloadModel` fetches a model's hub repos (base and
//! adapter) on a thread of its own through `pagesight_model::hub::ensure`, reporting
//! `Event::DownloadProgress` ~10× a second and ending with `DownloadFinished` or
//! `DownloadFailed`; `Command::CancelDownload` sets its cancel flag (the partial files stay, so
//! the next download resumes). `Command::CheckModel` answers whether a model is on disk (the
//! cache alone, no network) at once, then — when it is not — its download size from the hub.

use super::event::{Event, ModelStatus};
use crossbeam_channel::Sender;
use pagesight_model::hub::{self, HubConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Default)]
pub struct Downloads {
    current: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Downloads {
    fn running(&self) -> bool {
        self.current.as_ref().is_some_and(|(_, t)| !t.is_finished())
    }

    pub fn start(&mut self, events: &Sender<Event>, model: String, adapter: Option<String>) {
        if self.running() {
            let _ = events.send(Event::Error {
                context: format!("download of {model}"),
                message: "a download is already running; cancel it or wait for it to finish".into(),
                request_id: None,
            });
            return;
        }
        if let Some((_, t)) = self.current.take() {
            let _ = t.join();
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (flag, events) = (cancel.clone(), events.clone());
        let thread = std::thread::Builder::new()
            .name("pagesight-download".into())
            .spawn(move || {
                let cfg = HubConfig::from_env();
                let repos = hub::repos_of(&model, adapter.as_deref());
                let progress_events = events.clone();
                let r = hub::ensure(&cfg, &hub::borrowed(&repos), &flag, &mut |p| {
                    let _ = progress_events.send(Event::DownloadProgress(p.clone()));
                });
                let _ = events.send(match r {
                    Ok(_) => Event::DownloadFinished { model, adapter },
                    Err(e) => Event::DownloadFailed {
                        model,
                        adapter,
                        cancelled: e.is_cancelled(),
                        message: e.to_string(),
                    },
                });
            })
            .expect("spawn download thread");
        self.current = Some((cancel, thread));
    }

    pub fn cancel(&self) {
        if let Some((flag, _)) = &self.current {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// Answers `CheckModel` on a short-lived thread (the hub's answer can take seconds).
    pub fn check(&self, events: &Sender<Event>, model: String, adapter: Option<String>) {
        let events = events.clone();
        let _ = std::thread::Builder::new()
            .name("pagesight-model-check".into())
            .spawn(move || {
                let cfg = HubConfig::from_env();
                let missing = hub::missing_repos(&cfg, &model, adapter.as_deref());
                let mut status = ModelStatus {
                    model,
                    adapter,
                    on_disk: missing.is_empty(),
                    missing: missing.iter().map(|(r, _)| r.clone()).collect(),
                    total_bytes: None,
                    present_bytes: 0,
                    size_note: None,
                    cache_dir: cfg.cache_dir.clone(),
                };
                let _ = events.send(Event::ModelStatus(status.clone()));
                if missing.is_empty() {
                    return;
                }
                match hub::plan(&cfg, &hub::borrowed(&missing)) {
                    Ok(p) => {
                        status.total_bytes = Some(p.total_bytes);
                        status.present_bytes = p.present_bytes;
                    }
                    Err(e) => status.size_note = Some(e.to_string()),
                }
                let _ = events.send(Event::ModelStatus(status));
            });
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        if let Some((flag, t)) = self.current.take() {
            flag.store(true, Ordering::SeqCst);
            let _ = t.join();
        }
    }
}
