//! Turns per-batch measurements into `Metrics` events about four times a second, and keeps the
//! whole series for summaries, A/B comparisons and the bench JSON.

use super::event::{Metrics, ReplicaSummary};
use super::gpu::timings::GpuGaps;
use super::gpu_cards::GpuCards;
use super::settings::{DeviceChoice, TransferMode};
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
    cards: GpuCards,
    series: Vec<Metrics>,
}

const INTERVAL: Duration = Duration::from_millis(250);

impl MetricsRecorder {
    /// Records a run on `devices` (one per replica), sampling each CUDA card among them.
    pub fn new(devices: &[DeviceChoice]) -> Self {
        Self::with_cards(GpuCards::open(devices, INTERVAL))
    }

    pub fn with_cards(cards: GpuCards) -> Self {
        let now = Instant::now();
        MetricsRecorder {
            started: now,
            interval: INTERVAL,
            last_emit: now,
            window: BatchReport::default(),
            window_gpu_busy: 0.0,
            window_has_gpu_busy: false,
            total: BatchReport::default(),
            gaps: GpuGaps::default(),
            cards,
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

    /// `replicas` with each one's card sample filled in (the run's summary).
    pub fn with_card_samples(&self, replicas: Vec<ReplicaSummary>) -> Vec<ReplicaSummary> {
        self.cards.attach(replicas)
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
        let cards = self.cards.now();
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
            gpu: cards.first,
            gpu_unavailable: cards.unavailable,
            gpus: cards.cards,
            replicas: self.cards.attach(replicas()),
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
        let mut r = MetricsRecorder::new(&[DeviceChoice::Cpu]);
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
    /// Card N's fake NVML: utilisation N/10, N GiB used.
    fn fake_cards(devices: &[DeviceChoice], asked: &mut Vec<usize>) -> GpuCards {
        use crate::event::GpuSample;
        use crate::gpu_monitor::GpuSampler;
        GpuCards::start(devices, |n| {
            asked.push(n);
            GpuSampler::start_with(
                move || {
                    Ok(GpuSample {
                        utilisation: n as f32 / 10.0,
                        memory_used_bytes: (n as u64) << 30,
                        memory_total_bytes: 80 << 30,
                        pcie_tx_bytes_per_sec: Some(n as f64 * 1e6),
                        pcie_rx_bytes_per_sec: Some(n as f64 * 1e9),
                    })
                },
                Duration::from_millis(1),
            )
        })
    }

    fn replica(i: usize, device: DeviceChoice) -> ReplicaSummary {
        ReplicaSummary {
            replica: i,
            device: device.to_string(),
            pages: 4,
            batches: 1,
            pages_per_sec: 1.0,
            busy_secs: 0.1,
            h2d_bytes_per_sec: 0.0,
            stages: StageTimes::default(),
            gpu: None,
            failed: None,
        }
    }

    /// Emits until every card has a sample in (the samplers run on their own threads).
    fn emit_with_cards(
        r: &mut MetricsRecorder,
        replicas: &[ReplicaSummary],
        cards: usize,
    ) -> Metrics {
        let t0 = Instant::now();
        loop {
            let m = r
                .maybe_emit(TransferMode::Sync, 4, true, || replicas.to_vec())
                .unwrap();
            if m.gpus.len() == cards || t0.elapsed() > Duration::from_secs(10) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn each_card_of_the_run_is_sampled_and_each_replica_gets_its_own() {
        use DeviceChoice::Cuda;
        // cuda:2,0,2: cards 2 and 0, one sampler each, card 2 first (the primary device).
        let devices = [Cuda(2), Cuda(0), Cuda(2)];
        let mut asked = Vec::new();
        let mut r = MetricsRecorder::with_cards(fake_cards(&devices, &mut asked));
        assert_eq!(asked, [2, 0], "one sampler per distinct card");
        let replicas: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(i, &d)| replica(i, d))
            .collect();
        let m = emit_with_cards(&mut r, &replicas, 2);
        let ordinals: Vec<usize> = m.gpus.iter().map(|c| c.ordinal).collect();
        assert_eq!(ordinals, [2, 0]);
        assert_eq!(m.gpu.as_ref().map(|g| g.memory_used_bytes), Some(2 << 30));
        assert_eq!(m.gpu_unavailable, None);
        let used: Vec<Option<u64>> = m
            .replicas
            .iter()
            .map(|r| r.gpu.as_ref().map(|g| g.memory_used_bytes))
            .collect();
        assert_eq!(used, [Some(2 << 30), Some(0), Some(2 << 30)]);
        assert_eq!(
            m.replicas[1].gpu.as_ref().unwrap().pcie_rx_bytes_per_sec,
            Some(0.0)
        );
        // The run's summary gets the same figures.
        let summary = r.with_card_samples(replicas.clone());
        assert_eq!(summary[0].gpu.as_ref().unwrap().utilisation, 0.2);
        let total = crate::replica_figures::ReplicaTotal::of(&summary);
        assert_eq!(total.cards, 2);
        assert_eq!(total.memory_used_bytes, Some(2 << 30));
        assert!((total.mean_utilisation.unwrap() - 0.1).abs() < 1e-6);
    }

    #[test]
    fn a_single_card_run_samples_its_own_card_and_a_cpu_run_none() {
        let mut asked = Vec::new();
        let mut r = MetricsRecorder::with_cards(fake_cards(&[DeviceChoice::Cuda(3)], &mut asked));
        assert_eq!(asked, [3], "cuda:3 samples card 3, not card 0");
        let m = emit_with_cards(&mut r, &[], 1);
        assert_eq!(m.gpus.len(), 1);
        assert_eq!(m.gpu.unwrap().memory_used_bytes, 3 << 30);
        let mut asked = Vec::new();
        let cpu = fake_cards(&[DeviceChoice::Cpu, DeviceChoice::Cpu], &mut asked);
        assert!(asked.is_empty());
        let now = cpu.now();
        assert!(now.cards.is_empty() && now.first.is_none());
    }

    #[test]
    fn window_and_totals_accumulate() {
        let mut r = MetricsRecorder::new(&[DeviceChoice::Cpu]);
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
        assert_eq!(
            m.gpu_unavailable.as_deref(),
            Some("the run computes on the CPU")
        );
        assert_eq!(r.total().pages, 8);
        assert!(
            r.maybe_emit(TransferMode::Sync, 4, false, Vec::new)
                .is_none(),
            "interval not yet passed"
        );
    }
}
