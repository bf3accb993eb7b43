//! The watch thread: one named thread that watches every corpus folder it is given and sends the
//! UI what it noticed, on a channel the UI drains with `try_recv` (it never blocks the UI).
//!
//! A change notification (`notify`: inotify, FSEvents, ReadDirectoryChanges) only says "look
//! again": the thread then scans the folder (`scan.rs`) and the tracker decides (`tracker.rs`).
//! Where notifications cannot be had — inotify's watch limit reached, a network file system whose
//! other writers inotify never hears of — the folder is scanned every `poll` instead; with
//! notifications it is still scanned every `rescan`, in case one was lost.

use super::fs_kind::network_fs;
use super::scan::scan;
use super::tracker::{Changes, Outcome, Tracker};
use crossbeam_channel::{Receiver, Sender};
use notify::Watcher;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long things take; tests shorten them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WatchTimings {
    /// How long a changed file must keep its size and time before it is ingested.
    pub debounce: Duration,
    /// Scan interval of a folder without change notifications, and of a paused one.
    pub poll: Duration,
    /// Scan interval of a folder with change notifications (a safety net).
    pub rescan: Duration,
}

impl Default for WatchTimings {
    fn default() -> Self {
        WatchTimings {
            debounce: Duration::from_secs(2),
            poll: Duration::from_secs(5),
            rescan: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// Watching `folder`; `polling` says why by scans instead of notifications.
    Watching {
        folder: PathBuf,
        polling: Option<String>,
    },
    Paused {
        folder: PathBuf,
        why: String,
    },
    Resumed {
        folder: PathBuf,
    },
    /// Changes noticed; their files are still being written.
    Settling {
        folder: PathBuf,
        files: usize,
    },
    /// These PDFs changed and have settled: ingest the folder.
    Settled {
        folder: PathBuf,
        changes: Changes,
    },
}

enum Msg {
    /// Watch exactly these folders.
    Set(Vec<PathBuf>),
    /// Something happened under this folder.
    Touched(PathBuf),
    /// Notifications failed for this folder at run time: poll it.
    Poll(PathBuf, String),
}

/// The running watch thread; dropping it ends the thread.
pub struct WatchService {
    tx: Sender<Msg>,
    pub events: Receiver<WatchEvent>,
}

impl WatchService {
    pub fn spawn(timings: WatchTimings, repaint: impl Fn() + Send + 'static) -> WatchService {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ev_tx, events) = crossbeam_channel::unbounded();
        let self_tx = tx.clone();
        std::thread::Builder::new()
            .name("pagesight-watch".into())
            .spawn(move || run(timings, &rx, &self_tx, &ev_tx, &repaint))
            .expect("spawning the watch thread");
        WatchService { tx, events }
    }

    /// Watches exactly `folders` from now on.
    pub fn set(&self, folders: Vec<PathBuf>) {
        let _ = self.tx.send(Msg::Set(folders));
    }
}

struct Watched {
    tracker: Tracker,
    /// Kept alive while notifications work; None: polled.
    notifier: Option<notify::RecommendedWatcher>,
    /// Notifications worked for this folder (started again when it comes back after a pause).
    notifiable: bool,
    next_scan: Instant,
    touched: bool,
}

fn run(
    timings: WatchTimings,
    rx: &Receiver<Msg>,
    self_tx: &Sender<Msg>,
    events: &Sender<WatchEvent>,
    repaint: &dyn Fn(),
) {
    let mut folders: BTreeMap<PathBuf, Watched> = BTreeMap::new();
    // A short tick while files settle, so the debounce window is kept to within a tick.
    let tick = (timings.debounce / 4).max(Duration::from_millis(5));
    loop {
        let wait = folders
            .values()
            .map(|w| {
                if w.tracker.is_settling() {
                    tick
                } else {
                    w.next_scan.saturating_duration_since(Instant::now())
                }
            })
            .min()
            .unwrap_or(Duration::from_secs(3600));
        let mut sent = false;
        match rx.recv_timeout(wait) {
            Ok(Msg::Set(list)) => {
                folders.retain(|f, _| list.contains(f));
                for f in list {
                    if !folders.contains_key(&f) {
                        let (w, polling) = start(&f, timings, self_tx);
                        folders.insert(f.clone(), w);
                        sent |= events
                            .send(WatchEvent::Watching { folder: f, polling })
                            .is_ok();
                    }
                }
            }
            Ok(Msg::Touched(f)) => {
                if let Some(w) = folders.get_mut(&f) {
                    w.touched = true;
                }
            }
            Ok(Msg::Poll(f, why)) => {
                if let Some(w) = folders.get_mut(&f) {
                    w.notifier = None;
                    w.notifiable = false;
                    sent |= events
                        .send(WatchEvent::Watching {
                            folder: f,
                            polling: Some(why),
                        })
                        .is_ok();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        for (folder, w) in &mut folders {
            if !(w.touched || w.tracker.is_settling() || now >= w.next_scan) {
                continue;
            }
            w.touched = false;
            let was_paused = w.tracker.is_paused();
            let interval = if w.notifier.is_some() && !was_paused {
                timings.rescan
            } else {
                timings.poll
            };
            w.next_scan = now + interval;
            for outcome in w.tracker.observe(scan(folder), now) {
                let folder = folder.clone();
                let ev = match outcome {
                    Outcome::Paused(why) => WatchEvent::Paused { folder, why },
                    Outcome::Resumed => WatchEvent::Resumed { folder },
                    Outcome::Settling(files) => WatchEvent::Settling { folder, files },
                    Outcome::Settled(changes) => WatchEvent::Settled { folder, changes },
                };
                sent |= events.send(ev).is_ok();
            }
            if w.tracker.is_paused() {
                // Its notifications died with the folder.
                w.notifier = None;
            } else if was_paused && w.notifiable {
                w.notifier = notifier(folder, self_tx).ok();
            }
        }
        if sent {
            repaint();
        }
    }
}

/// Starts watching `folder`: notifications when they can be had, else polling (and why).
fn start(folder: &Path, timings: WatchTimings, self_tx: &Sender<Msg>) -> (Watched, Option<String>) {
    let (notifier, polling) = match network_fs(folder) {
        Some(fs) => (
            None,
            Some(format!(
                "polled every {:.0} s: a {fs} network folder",
                timings.poll.as_secs_f64()
            )),
        ),
        None => match notifier(folder, self_tx) {
            Ok(n) => (Some(n), None),
            Err(why) => (None, Some(why)),
        },
    };
    let w = Watched {
        tracker: Tracker::new(timings.debounce),
        notifiable: notifier.is_some(),
        notifier,
        // The first scan is the baseline: right away.
        next_scan: Instant::now(),
        touched: true,
    };
    (w, polling)
}

fn notifier(folder: &Path, self_tx: &Sender<Msg>) -> Result<notify::RecommendedWatcher, String> {
    let (tx, f) = (self_tx.clone(), folder.to_path_buf());
    let mut n = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let _ = tx.send(match res {
            Ok(_) => Msg::Touched(f.clone()),
            Err(e) => Msg::Poll(f.clone(), polling_reason(&e)),
        });
    })
    .map_err(|e| polling_reason(&e))?;
    n.watch(folder, notify::RecursiveMode::Recursive)
        .map_err(|e| polling_reason(&e))?;
    Ok(n)
}

fn polling_reason(e: &notify::Error) -> String {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => "polled: the system's limit of watched folders is reached (raise fs.inotify.max_user_watches)".into(),
        _ => format!("polled: change notifications unavailable ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings() -> WatchTimings {
        WatchTimings {
            debounce: Duration::from_millis(60),
            poll: Duration::from_millis(20),
            rescan: Duration::from_millis(200),
        }
    }

    /// The next event that is not progress (`Settling`), within a generous bound.
    fn next(s: &WatchService) -> WatchEvent {
        loop {
            match s
                .events
                .recv_timeout(Duration::from_secs(10))
                .expect("a watch event")
            {
                WatchEvent::Settling { .. } => continue,
                ev => return ev,
            }
        }
    }

    #[test]
    fn a_new_pdf_is_reported_once_settled_and_a_vanished_folder_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("corpus");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("old.pdf"), b"%PDF-1.4 old").unwrap();
        let s = WatchService::spawn(timings(), || {});
        s.set(vec![folder.clone()]);
        assert!(matches!(next(&s), WatchEvent::Watching { .. }));
        // Let the baseline scan happen before the change.
        std::thread::sleep(Duration::from_millis(30));
        std::fs::write(folder.join("new.pdf"), b"%PDF-1.4 new").unwrap();
        std::fs::write(folder.join("notes.txt"), b"not a pdf").unwrap();
        match next(&s) {
            WatchEvent::Settled { folder: f, changes } => {
                assert_eq!(f, folder);
                assert_eq!(changes.added, [folder.join("new.pdf")]);
                assert!(changes.changed.is_empty() && changes.removed.is_empty());
            }
            other => panic!("expected the new file: {other:?}"),
        }
        std::fs::remove_dir_all(&folder).unwrap();
        assert!(matches!(next(&s), WatchEvent::Paused { .. }));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("old.pdf"), b"%PDF-1.4 old").unwrap();
        std::fs::write(folder.join("new.pdf"), b"%PDF-1.4 new").unwrap();
        assert_eq!(
            next(&s),
            WatchEvent::Resumed {
                folder: folder.clone()
            }
        );
    }
}
