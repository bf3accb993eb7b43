//! Turns per-batch measurements into `Metrics` events about four times a second, and keeps the
//! whole series for summaries, A/B comparisons and the bench JSON.

use super::event::{GpuSample, Metrics, ReplicaSummary};
use super::gpu::timings::GpuGaps;
use super::gpu_monitor::{GpuMonitor, GpuSampler};
use super::settings::TransferMode;
use super::stage::StageTimes;
use std::time::{Duration, Instant};

/// What one batch reports after it has been written.
#[derive(Clone, Debug, Default)]
pub struct BatchReport {
    pub pages: usize,
    pub stages: StageTimes,
    pub h2d_bytes: u64,
    /// Device-timed copy duration (the copy itself, whether or not anything waited for it).
    pub h2d_secs: f64,
    /// Time the compute stream waited for a copy.
    pub copy_critical_secs: f64,
    /// Time the compute stream had work queued, when measured with device events.
    pub gpu_busy_secs: Option<f64>,
    /// The compute stream's start and end for this batch (device events, ms on one epoch).
    pub gpu_span_ms: Option<(f64, f64)>,
}

pub struct MetricsRecorder {
    started: Instant,
    interval: Duration,
    last_emit: Instant,
    window: BatchReport,
    window_gpu_busy: f64,
    window_has_gpu_busy: bool,
    total: BatchReport,
    gaps: GpuGaps,
    gpu: GpuSampler,
    series: Vec<Metrics>,
}

impl MetricsRecorder {
    pub fn new(monitor: Result<GpuMonitor, String>) -> Self {
        let now = Instant::now();
        let interval = Duration::from_millis(250);
        MetricsRecorder {
            started: now,
            interval,
            last_emit: now,
            window: BatchReport::default(),
            window_gpu_busy: 0.0,
            window_has_gpu_busy: false,
            total: BatchReport::default(),
            gaps: GpuGaps::default(),
            gpu: GpuSampler::start(monitor, interval),
            series: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn total(&self) -> &BatchReport {
        &self.total
    }

    /// Idle time of the compute stream between consecutive batches over the span from the first
    /// batch's start to the last one's end (None without device timings).
    pub fn gpu_idle_between_batches(&self) -> Option<f64> {
        self.gaps.idle_fraction()
    }

    pub fn series(&self) -> &[Metrics] {
        &self.series
    }

    pub fn record(&mut self, b: &BatchReport) {
        for acc in [&mut self.window, &mut self.total] {
            acc.pages += b.pages;
            acc.stages.accumulate(&b.stages);
            acc.h2d_bytes += b.h2d_bytes;
            acc.h2d_secs += b.h2d_secs;
            acc.copy_critical_secs += b.copy_critical_secs;
        }
        if let Some(busy) = b.gpu_busy_secs {
            self.window_gpu_busy += busy;
            self.window_has_gpu_busy = true;
            *self.total.gpu_busy_secs.get_or_insert(0.0) += busy;
        }
        if let Some(span) = b.gpu_span_ms {
            self.gaps.add(span);
        }
    }

    /// Adds time that belongs to no batch (e.g. discovery) to the stage totals.
    pub fn record_stages(&mut self, stages: &StageTimes) {
        self.window.stages.accumulate(stages);
        self.total.stages.accumulate(stages);
    }

    /// A metrics event when the interval has passed (or `force`), else None. `replicas` is
    /// asked only when an event is made.
    pub fn maybe_emit(
        &mut self,
        transfer: TransferMode,
        batch_size: usize,
        force: bool,
        replicas: impl FnOnce() -> Vec<ReplicaSummary>,
    ) -> Option<Metrics> {
        let now = Instant::now();
        let dt = (now - self.last_emit).as_secs_f64();
        if !force && now - self.last_emit < self.interval {
            return None;
        }
        if dt <= 0.0 {
            return None;
        }
        let (gpu, gpu_unavailable): (Option<GpuSample>, Option<String>) = self.gpu.latest();
        let w = std::mem::take(&mut self.window);
        let m = Metrics {
            t: self.elapsed(),
            pages_per_sec: w.pages as f64 / dt,
            h2d_bytes_per_sec: if w.h2d_secs > 0.0 {
                w.h2d_bytes as f64 / w.h2d_secs
            } else {
                0.0
            },
            h2d_secs: w.h2d_secs,
            copy_critical_secs: w.copy_critical_secs,
            gpu_busy: self
                .window_has_gpu_busy
                .then(|| (self.window_gpu_busy / dt).min(1.0)),
            transfer,
            batch_size,
            stages: w.stages,
            gpu,
            gpu_unavailable,
            replicas: replicas(),
        };
        self.window_gpu_busy = 0.0;
        self.window_has_gpu_busy = false;
        self.last_emit = now;
        self.series.push(m.clone());
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stage;

    #[test]
    fn idle_between_batches_counts_only_gaps_inside_the_span() {
        let mut r = MetricsRecorder::new(Err("no gpu".into()));
        assert_eq!(r.gpu_idle_between_batches(), None);
        // Batches at [100, 110], [110.5, 120], [122, 130]: 2.5 ms idle over 30 ms; the 100 ms
        // before the first batch is not "between batches".
        for span in [(100.0, 110.0), (110.5, 120.0), (122.0, 130.0)] {
            r.record(&BatchReport {
                pages: 4,
                gpu_span_ms: Some(span),
                ..Default::default()
            });
        }
        r.record(&BatchReport {
            pages: 4,
            ..Default::default()
        });
        let idle = r.gpu_idle_between_batches().unwrap();
        assert!((idle - 2.5 / 30.0).abs() < 1e-12, "{idle}");
    }
    #[test]
    fn window_and_totals_accumulate() {
        let mut r = MetricsRecorder::new(Err("no gpu".into()));
        let mut st = StageTimes::default();
        st.add(Stage::Lm, 0.5);
        let b = BatchReport {
            pages: 4,
            stages: st,
            h2d_bytes: 1000,
            h2d_secs: 0.001,
            ..Default::default()
        };
        r.record(&b);
        r.record(&b);
        std::thread::sleep(Duration::from_millis(5));
        let m = r.maybe_emit(TransferMode::Sync, 4, true, Vec::new).unwrap();
        assert!(m.pages_per_sec > 0.0);
        assert_eq!(m.stages.get(Stage::Lm), 1.0);
        assert!((m.h2d_bytes_per_sec - 1e6).abs() < 1.0);
        assert_eq!(m.gpu_unavailable.as_deref(), Some("no gpu"));
        assert_eq!(r.total().pages, 8);
        assert!(
            r.maybe_emit(TransferMode::Sync, 4, false, Vec::new)
                .is_none(),
            "interval not yet passed"
        );
    }
}
