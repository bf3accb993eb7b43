//! The per-frame drain: engine events until the channel is empty or the time budget is spent,
//! what ends when the engine stops, and the messages of the background threads (pickers, loads).

use super::*;

impl PagesightApp {
    /// Drains engine events until the channel is empty or the budget is spent; returns whether
    /// events were left for the next frame.
    pub(super) fn drain_events(&mut self) -> bool {
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

    pub(super) fn on_ui_msg(&mut self, msg: UiMsg) {
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
}
