//! When a watched folder's changes are ready to ingest: the pure logic, fed scans and the time.
//!
//! The first scan is the baseline. A later scan that differs from it opens a change set; each
//! changed file must then keep one size and modification time for a whole debounce window (a
//! file still being copied keeps growing, and the ingest must not read it half-way), and only
//! when every file of the set has settled does the set go out, at once: an ingest reads the
//! whole folder, so it waits for the slowest file. A folder that is gone, or now on another
//! device (an unmounted drive's empty mount point), pauses the watch and drops the set instead of
//! reporting its files deleted: their pages stay in the index until the folder is back.

use super::scan::{FolderScan, Signature};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// PDFs that settled since the last change set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<PathBuf>,
    pub changed: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
}

impl Changes {
    /// "2 new, 1 changed, 1 deleted".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.added.len(), "new"),
            (self.changed.len(), "changed"),
            (self.removed.len(), "deleted"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        parts.join(", ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The folder is gone or on another device; says why.
    Paused(String),
    /// Back after a pause (what changed meanwhile settles like any change).
    Resumed,
    /// Changes noticed, some still moving: how many files.
    Settling(usize),
    Settled(Changes),
}

pub struct Tracker {
    debounce: Duration,
    baseline: Option<FolderScan>,
    /// Each differing file's current signature (None: deleted) and since when it has it.
    pending: BTreeMap<PathBuf, (Option<Signature>, Instant)>,
    paused: bool,
}

impl Tracker {
    pub fn new(debounce: Duration) -> Tracker {
        Tracker {
            debounce,
            baseline: None,
            pending: BTreeMap::new(),
            paused: false,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether changes wait for their files to settle (the caller scans again soon).
    pub fn is_settling(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the scan made at `now` (None: the folder is gone).
    pub fn observe(&mut self, scan: Option<FolderScan>, now: Instant) -> Vec<Outcome> {
        let mut out = Vec::new();
        let Some(base) = &self.baseline else {
            self.baseline = scan;
            return out;
        };
        let scan = match scan {
            Some(s) if s.device == base.device => s,
            gone => {
                if !self.paused {
                    self.paused = true;
                    self.pending.clear();
                    out.push(Outcome::Paused(match gone {
                        None => "the folder is gone (unmounted drive?); its pages stay in the index".into(),
                        Some(_) => "the folder is now on another device (drive unmounted?); its pages stay in the index".into(),
                    }));
                }
                return out;
            }
        };
        if self.paused {
            self.paused = false;
            out.push(Outcome::Resumed);
        }
        let mut differing: BTreeMap<PathBuf, Option<Signature>> = BTreeMap::new();
        for (path, sig) in &scan.files {
            if base.files.get(path) != Some(sig) {
                differing.insert(path.clone(), Some(*sig));
            }
        }
        for path in base.files.keys().filter(|p| !scan.files.contains_key(*p)) {
            differing.insert(path.clone(), None);
        }
        self.pending.retain(|p, _| differing.contains_key(p));
        for (path, sig) in differing {
            match self.pending.get(&path) {
                Some((seen, _)) if *seen == sig => {}
                _ => {
                    self.pending.insert(path, (sig, now));
                }
            }
        }
        if self.pending.is_empty() {
            return out;
        }
        let settled = self
            .pending
            .values()
            .all(|(_, since)| now.duration_since(*since) >= self.debounce);
        if !settled {
            out.push(Outcome::Settling(self.pending.len()));
            return out;
        }
        let mut changes = Changes::default();
        for (path, (sig, _)) in std::mem::take(&mut self.pending) {
            match (sig, base.files.contains_key(&path)) {
                (None, _) => changes.removed.push(path),
                (Some(_), true) => changes.changed.push(path),
                (Some(_), false) => changes.added.push(path),
            }
        }
        self.baseline = Some(scan);
        out.push(Outcome::Settled(changes));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    const DEBOUNCE: Duration = Duration::from_millis(500);

    fn scan(device: u64, files: &[(&str, u64)]) -> Option<FolderScan> {
        Some(FolderScan {
            device,
            files: files
                .iter()
                .map(|(p, size)| {
                    (
                        PathBuf::from(p),
                        Signature {
                            size: *size,
                            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(*size)),
                        },
                    )
                })
                .collect(),
        })
    }

    #[test]
    fn a_file_being_written_goes_out_once_it_stops_growing() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tracker::new(DEBOUNCE);
        assert!(
            t.observe(scan(1, &[("/c/a.pdf", 10)]), at(0)).is_empty(),
            "baseline"
        );
        // b.pdf appears and grows for a while: nothing goes out.
        for (ms, size) in [(100, 1), (400, 5), (800, 9), (1200, 12)] {
            let out = t.observe(scan(1, &[("/c/a.pdf", 10), ("/c/b.pdf", size)]), at(ms));
            assert_eq!(out, [Outcome::Settling(1)], "at {ms} ms");
        }
        // Still 12 bytes, but not yet for a whole window.
        let steady = scan(1, &[("/c/a.pdf", 10), ("/c/b.pdf", 12)]);
        assert_eq!(t.observe(steady.clone(), at(1600)), [Outcome::Settling(1)]);
        let out = t.observe(steady.clone(), at(1700));
        assert_eq!(
            out,
            [Outcome::Settled(Changes {
                added: vec!["/c/b.pdf".into()],
                ..Default::default()
            })]
        );
        assert!(!t.is_settling());
        assert!(t.observe(steady, at(5000)).is_empty(), "nothing new");
    }

    #[test]
    fn a_change_set_waits_for_its_slowest_file() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tracker::new(DEBOUNCE);
        t.observe(scan(1, &[("/c/a.pdf", 10), ("/c/old.pdf", 3)]), at(0));
        t.observe(scan(1, &[("/c/a.pdf", 11), ("/c/new.pdf", 1)]), at(100));
        // a.pdf is steady, new.pdf still grows.
        let out = t.observe(scan(1, &[("/c/a.pdf", 11), ("/c/new.pdf", 2)]), at(700));
        assert_eq!(out, [Outcome::Settling(3)]);
        let out = t.observe(scan(1, &[("/c/a.pdf", 11), ("/c/new.pdf", 2)]), at(1200));
        let Some(Outcome::Settled(c)) = out.last() else {
            panic!("not settled: {out:?}");
        };
        assert_eq!(c.added, [PathBuf::from("/c/new.pdf")]);
        assert_eq!(c.changed, [PathBuf::from("/c/a.pdf")]);
        assert_eq!(c.removed, [PathBuf::from("/c/old.pdf")]);
        assert_eq!(c.describe(), "1 new, 1 changed, 1 deleted");
    }

    #[test]
    fn a_folder_that_disappears_pauses_instead_of_deleting() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tracker::new(DEBOUNCE);
        t.observe(scan(1, &[("/m/a.pdf", 10)]), at(0));
        let out = t.observe(None, at(100));
        assert!(matches!(&out[..], [Outcome::Paused(why)] if why.contains("gone")));
        assert!(t.is_paused());
        assert!(t.observe(None, at(5000)).is_empty(), "said once");
        // The mount point is back, empty, on the root file system: still paused.
        assert!(t.observe(scan(2, &[]), at(6000)).is_empty());
        assert!(t.is_paused());
        // The drive is mounted again with its files: nothing was deleted.
        assert_eq!(
            t.observe(scan(1, &[("/m/a.pdf", 10)]), at(7000)),
            [Outcome::Resumed]
        );
        assert!(!t.is_paused());
        assert!(t.observe(scan(1, &[("/m/a.pdf", 10)]), at(9000)).is_empty());
    }

    #[test]
    fn a_drive_unmounted_under_its_mount_point_pauses() {
        let t0 = Instant::now();
        let mut t = Tracker::new(DEBOUNCE);
        t.observe(scan(1, &[("/m/a.pdf", 10)]), t0);
        let out = t.observe(scan(2, &[]), t0 + DEBOUNCE * 4);
        assert!(matches!(&out[..], [Outcome::Paused(why)] if why.contains("another device")));
    }

    #[test]
    fn a_change_undone_before_it_settles_is_forgotten() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Tracker::new(DEBOUNCE);
        t.observe(scan(1, &[("/c/a.pdf", 10)]), at(0));
        t.observe(scan(1, &[("/c/a.pdf", 10), ("/c/tmp.pdf", 1)]), at(100));
        assert!(t.observe(scan(1, &[("/c/a.pdf", 10)]), at(200)).is_empty());
        assert!(!t.is_settling());
    }
}
