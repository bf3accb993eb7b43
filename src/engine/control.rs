//! Run control shared between the engine thread and a running job: pause, resume, cancel and
//! live settings, all taking effect between batches.

use super::settings::LiveSettings;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub struct RunControl {
    cancelled: AtomicBool,
    paused: Mutex<bool>,
    resumed: Condvar,
    live: Mutex<Option<LiveSettings>>,
    live_version: AtomicU64,
}

impl RunControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        // A paused job must wake up to notice the cancel.
        self.resume();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn pause(&self) {
        *self.paused.lock().unwrap() = true;
    }

    pub fn resume(&self) {
        *self.paused.lock().unwrap() = false;
        self.resumed.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.lock().unwrap()
    }

    /// Blocks while paused. Returns false when the run was cancelled.
    pub fn wait_while_paused(&self) -> bool {
        let mut p = self.paused.lock().unwrap();
        while *p && !self.is_cancelled() {
            p = self.resumed.wait(p).unwrap();
        }
        !self.is_cancelled()
    }

    /// Queues new live settings; the job picks them up before its next batch.
    pub fn set_live(&self, s: LiveSettings) {
        *self.live.lock().unwrap() = Some(s);
        self.live_version.fetch_add(1, Ordering::SeqCst);
    }

    /// Takes pending live settings, if any arrived since the last call.
    pub fn take_live(&self) -> Option<LiveSettings> {
        self.live.lock().unwrap().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    #[test]
    fn cancel_wakes_a_paused_job() {
        let c = Arc::new(RunControl::new());
        c.pause();
        let c2 = c.clone();
        let t = std::thread::spawn(move || c2.wait_while_paused());
        std::thread::sleep(std::time::Duration::from_millis(20));
        c.cancel();
        assert!(!t.join().unwrap());
    }
    #[test]
    fn live_settings_are_taken_once() {
        let c = RunControl::new();
        assert!(c.take_live().is_none());
        c.set_live(LiveSettings {
            batch_size: 8,
            ..Default::default()
        });
        assert_eq!(c.take_live().unwrap().batch_size, 8);
        assert!(c.take_live().is_none());
    }
}
