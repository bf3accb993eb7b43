//! What a download reports as it goes (overall and for the file in flight, speed, time left),
//! and the meter that works out speed and ETA over the last few seconds.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownloadProgress {
    /// The repo the file in flight belongs to.
    pub repo: String,
    /// The file in flight (its name in the repo).
    pub file: String,
    pub file_done: u64,
    pub file_total: u64,
    /// Over every file of the download, counting what an earlier attempt left.
    pub done: u64,
    pub total: u64,
    /// Over the last few seconds; 0 until there is a measurement.
    pub bytes_per_sec: f64,
    /// Time left at that speed; None while unknown.
    pub eta_secs: Option<f64>,
}

impl DownloadProgress {
    pub fn fraction(&self) -> f32 {
        if self.total == 0 {
            0.0
        } else {
            (self.done as f64 / self.total as f64) as f32
        }
    }
}

/// Speed over a sliding window of (time, bytes done) samples.
pub struct SpeedMeter {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl SpeedMeter {
    pub fn new(window: Duration) -> SpeedMeter {
        SpeedMeter {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records `done` at `now`; returns bytes/s over the window (0 until two samples).
    pub fn record(&mut self, now: Instant, done: u64) -> f64 {
        self.samples.push_back((now, done));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (t0, d0) = self.samples[0];
        let dt = now.duration_since(t0).as_secs_f64();
        if dt < 0.05 {
            return 0.0;
        }
        done.saturating_sub(d0) as f64 / dt
    }

    /// Forgets the samples (a resumed prefix or a restarted file is no measure of speed).
    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

/// Seconds left for `remaining` bytes at `bytes_per_sec`.
pub fn eta(remaining: u64, bytes_per_sec: f64) -> Option<f64> {
    (bytes_per_sec > 0.0).then(|| remaining as f64 / bytes_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_measured_over_the_window() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut m = SpeedMeter::new(Duration::from_secs(2));
        assert_eq!(m.record(t0, 0), 0.0);
        let mut done = 0;
        let mut speed = 0.0;
        for i in 1..=10 {
            done += 1000;
            speed = m.record(at(i as f64), done);
        }
        assert!((speed - 1000.0).abs() < 1e-6, "{speed}");
        // Faster now: after the window has passed, the speed is the recent one alone.
        for i in 1..=4 {
            done += 2000;
            speed = m.record(at(10.0 + 0.5 * i as f64), done);
        }
        assert!((speed - 4000.0).abs() < 1e-6, "{speed}");
        assert_eq!(eta(8000, 4000.0), Some(2.0));
        assert_eq!(eta(8000, 0.0), None);
    }
}
