//! The app's side of watching: which folders the watch thread watches (the ticked corpora), what
//! it reports (a status per folder, a notice when one pauses), and the queue of ingests its
//! changes ask for, started one at a time when the engine has no other run.

use super::*;
use crate::ui::watch::{WatchEvent, WatchService};
use std::collections::VecDeque;

/// The watch thread and the ingests it asked for.
#[derive(Default)]
pub struct WatchLink {
    service: Option<WatchService>,
    /// The folders the thread was last told to watch.
    watching: Vec<PathBuf>,
    /// Folders whose changes wait for an ingest, oldest first (each once).
    pub queue: VecDeque<PathBuf>,
    /// The folder of the ingest the watch started, while it runs.
    pub running: Option<PathBuf>,
}

impl WatchLink {
    pub fn new(service: Option<WatchService>) -> WatchLink {
        WatchLink {
            service,
            ..Default::default()
        }
    }
}

impl PagesightApp {
    /// Tells the watch thread about the ticked corpora, takes what it reports, and starts the
    /// next queued ingest when the engine is free. Called every frame; costs a comparison when
    /// nothing changed.
    pub(super) fn poll_watch(&mut self) {
        let Some(service) = &self.watch.service else {
            return;
        };
        let wanted: Vec<PathBuf> = self
            .settings
            .library
            .iter()
            .filter(|c| c.watched)
            .map(|c| c.folder.clone())
            .collect();
        if wanted != self.watch.watching {
            service.set(wanted.clone());
            self.watch.watching = wanted;
        }
        let events: Vec<WatchEvent> = service.events.try_iter().collect();
        for ev in events {
            self.on_watch_event(ev);
        }
        if !self.ingest.state.is_active() {
            self.watch.running = None;
        }
        let engine_free =
            !self.ingest.state.is_active() && !matches!(self.perf.ab, AbState::Running { .. });
        if engine_free {
            if let Some(folder) = self.watch.queue.pop_front() {
                if let Some(at) = self.settings.corpus_of(&folder) {
                    self.library
                        .watch_state
                        .insert(folder.clone(), "ingesting its changes".into());
                    self.watch.running = Some(folder);
                    self.start_ingest_of(at, true);
                }
            }
        }
    }

    fn on_watch_event(&mut self, ev: WatchEvent) {
        let state = &mut self.library.watch_state;
        match ev {
            WatchEvent::Watching { folder, polling } => {
                state.insert(folder, polling.unwrap_or_else(|| "watching".into()));
            }
            WatchEvent::Paused { folder, why } => {
                state.insert(folder.clone(), format!("paused: {why}"));
                self.watch.queue.retain(|f| f != &folder);
                self.notify(format!("watch of {} paused: {why}", folder.display()));
            }
            WatchEvent::Resumed { folder } => {
                state.insert(folder.clone(), "watching".into());
                self.notify(format!("{} is back: watching it again", folder.display()));
            }
            WatchEvent::Settling { folder, files } => {
                state.insert(folder, format!("{files} file(s) changing…"));
            }
            WatchEvent::Settled { folder, changes } => {
                state.insert(
                    folder.clone(),
                    format!("{}: ingest queued", changes.describe()),
                );
                if !self.watch.queue.contains(&folder) {
                    self.watch.queue.push_back(folder);
                }
            }
        }
    }

    /// Stops watching a folder the library forgot, and drops its queued ingest.
    pub(super) fn watch_forget(&mut self, folder: &Path) {
        self.watch.queue.retain(|f| f != folder);
        self.library.watch_state.remove(folder);
    }

    /// The watch's part of the status bar's activity, if any.
    pub(super) fn watch_activity(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(f) = &self.watch.running {
            parts.push(format!(
                "ingesting the changes in {}",
                crate::ui::format::file_name(f)
            ));
        }
        if !self.watch.queue.is_empty() {
            parts.push(format!("{} watch ingest(s) queued", self.watch.queue.len()));
        }
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}
