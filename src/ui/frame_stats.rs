//! Time spent inside the app's `ui()` per frame (event drain + layout; not the rasteriser), kept in
//! a ring buffer so p50/p99 can be read while an ingest runs. `bench gui-frames` reads each
//! frame's sample (`last`) into one unbounded `FrameStats` per phase of its scenario.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FrameStats {
    samples: VecDeque<Duration>,
    capacity: usize,
}

impl Default for FrameStats {
    fn default() -> Self {
        FrameStats::with_capacity(2048)
    }
}

impl FrameStats {
    pub fn with_capacity(capacity: usize) -> Self {
        FrameStats {
            // Grows as needed: an unbounded one does not reserve its bound.
            samples: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// Keeps every sample (a benchmark's phase, not a long-lived window).
    pub fn unbounded() -> Self {
        FrameStats::with_capacity(usize::MAX)
    }

    /// The latest frame's time.
    pub fn last(&self) -> Option<Duration> {
        self.samples.back().copied()
    }

    pub fn record(&mut self, d: Duration) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q`-quantile (0..=1, nearest rank) of the recorded frame times, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }

    pub fn max_ms(&self) -> Option<f64> {
        self.samples.iter().max().map(|d| d.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quantiles_by_nearest_rank() {
        let mut s = FrameStats::with_capacity(100);
        assert_eq!(s.quantile_ms(0.5), None);
        for ms in 1..=100u64 {
            s.record(Duration::from_millis(ms));
        }
        assert_eq!(s.quantile_ms(0.5), Some(50.0));
        assert_eq!(s.quantile_ms(0.99), Some(99.0));
        s.record(Duration::from_millis(1000)); // evicts the 1 ms sample
        assert_eq!(s.len(), 100);
        assert_eq!(s.max_ms(), Some(1000.0));
        assert_eq!(s.last(), Some(Duration::from_millis(1000)));
    }

    #[test]
    fn unbounded_keeps_every_sample() {
        let mut s = FrameStats::unbounded();
        assert_eq!(s.last(), None);
        for ms in 0..10_000u64 {
            s.record(Duration::from_micros(ms));
        }
        assert_eq!(s.len(), 10_000);
        let top = s.quantile_ms(1.0).unwrap();
        assert!((top - 9.999).abs() < 1e-9, "{top}");
        assert_eq!(s.last(), Some(Duration::from_micros(9_999)));
    }
}
