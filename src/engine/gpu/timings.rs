//! Per-batch GPU timings, all from CUDA events (never host clocks around asynchronous work), and
//! the summaries the proofs and benchmarks use: overlap of copy N+1 with compute N, idle gaps.

use crate::settings::TransferMode;
use serde::{Deserialize, Serialize};

/// One batch as the device saw it. Times are milliseconds since the executor's epoch event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchGpuTimings {
    pub mode: TransferMode,
    pub pages: usize,
    pub h2d_bytes: u64,
    pub copy_start_ms: f64,
    pub copy_end_ms: f64,
    /// The compute stream's work for this batch (patchify included in async-u8).
    pub compute_start_ms: f64,
    pub compute_end_ms: f64,
    /// Time the compute stream waited for this batch's copy: the copy on the critical path.
    /// In `pageable` and `sync` the copy runs alone before compute, so it is all of the copy.
    pub copy_wait_ms: f64,
    /// GPU rescale/normalise/patchify time (async-u8 only, else 0).
    pub patchify_ms: f64,
    /// Vision tower and language model shares of the compute stream's time (events between).
    pub vision_ms: f64,
    pub lm_ms: f64,
    /// Whether the copy ran on a stream other than the compute stream.
    pub copy_on_separate_stream: bool,
}

impl BatchGpuTimings {
    pub fn copy_ms(&self) -> f64 {
        (self.copy_end_ms - self.copy_start_ms).max(0.0)
    }
    pub fn compute_ms(&self) -> f64 {
        (self.compute_end_ms - self.compute_start_ms).max(0.0)
    }
    /// Host-to-device bandwidth of this copy in bytes per second (0 when not measurable).
    pub fn h2d_bytes_per_sec(&self) -> f64 {
        let ms = self.copy_ms();
        if ms > 0.0 {
            self.h2d_bytes as f64 / (ms / 1e3)
        } else {
            0.0
        }
    }
    fn copy_overlaps_compute_of(&self, previous: &BatchGpuTimings) -> bool {
        self.copy_start_ms < previous.compute_end_ms && self.copy_end_ms > previous.compute_start_ms
    }
}

/// Summary of a sequence of batches, in submission order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuRunSummary {
    pub batches: usize,
    /// Fraction of consecutive pairs where copy N+1 overlapped compute N (None with < 2 batches).
    pub overlap_fraction: Option<f64>,
    /// Compute-stream busy time / span from the first compute start to the last compute end.
    pub gpu_busy_fraction: Option<f64>,
    /// Sum of gaps between compute N's end and compute N+1's start, over the same span.
    pub gpu_idle_between_batches_fraction: Option<f64>,
    pub copy_ms_total: f64,
    pub copy_wait_ms_total: f64,
    pub compute_ms_total: f64,
    pub h2d_bytes_total: u64,
    /// Bytes over copy time, all batches together.
    pub h2d_bytes_per_sec: f64,
}

/// Gaps between consecutive batches on the compute stream (device events): the GPU idle that
/// the pipeline could have filled, excluding the wait for the first batch and after the last.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuGaps {
    first_start_ms: Option<f64>,
    last_end_ms: f64,
    idle_ms: f64,
}

impl GpuGaps {
    pub fn add(&mut self, (start, end): (f64, f64)) {
        match self.first_start_ms {
            None => self.first_start_ms = Some(start),
            Some(_) => self.idle_ms += (start - self.last_end_ms).max(0.0),
        }
        self.last_end_ms = self.last_end_ms.max(end);
    }

    pub fn idle_fraction(&self) -> Option<f64> {
        let span = self.last_end_ms - self.first_start_ms?;
        (span > 0.0).then(|| self.idle_ms / span)
    }
}

pub fn summarise(batches: &[BatchGpuTimings]) -> GpuRunSummary {
    let pairs = batches.len().saturating_sub(1);
    let overlapped = batches
        .windows(2)
        .filter(|w| w[1].copy_overlaps_compute_of(&w[0]))
        .count();
    let copy_ms_total: f64 = batches.iter().map(BatchGpuTimings::copy_ms).sum();
    let compute_ms_total: f64 = batches.iter().map(BatchGpuTimings::compute_ms).sum();
    let h2d_bytes_total: u64 = batches.iter().map(|b| b.h2d_bytes).sum();
    let span = match (batches.first(), batches.last()) {
        (Some(f), Some(l)) => l.compute_end_ms - f.compute_start_ms,
        _ => 0.0,
    };
    let mut gaps = GpuGaps::default();
    for b in batches {
        gaps.add((b.compute_start_ms, b.compute_end_ms));
    }
    GpuRunSummary {
        batches: batches.len(),
        overlap_fraction: (pairs > 0).then(|| overlapped as f64 / pairs as f64),
        gpu_busy_fraction: (span > 0.0).then(|| (compute_ms_total / span).min(1.0)),
        gpu_idle_between_batches_fraction: gaps.idle_fraction(),
        copy_ms_total,
        copy_wait_ms_total: batches.iter().map(|b| b.copy_wait_ms).sum(),
        compute_ms_total,
        h2d_bytes_total,
        h2d_bytes_per_sec: if copy_ms_total > 0.0 {
            h2d_bytes_total as f64 / (copy_ms_total / 1e3)
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn batch(copy: (f64, f64), compute: (f64, f64)) -> BatchGpuTimings {
        BatchGpuTimings {
            h2d_bytes: 1_000_000,
            copy_start_ms: copy.0,
            copy_end_ms: copy.1,
            compute_start_ms: compute.0,
            compute_end_ms: compute.1,
            ..Default::default()
        }
    }
    #[test]
    fn overlap_and_idle_from_intervals() {
        // Batch 1's copy runs inside batch 0's compute; batch 2's copy starts after batch 1's compute.
        let b = [
            batch((0.0, 1.0), (1.0, 11.0)),
            batch((2.0, 3.0), (11.0, 21.0)),
            batch((22.0, 23.0), (23.0, 33.0)),
        ];
        let s = summarise(&b);
        assert_eq!(s.overlap_fraction, Some(0.5));
        assert!((s.gpu_idle_between_batches_fraction.unwrap() - 2.0 / 32.0).abs() < 1e-12);
        assert!((s.gpu_busy_fraction.unwrap() - 30.0 / 32.0).abs() < 1e-12);
        assert!((s.h2d_bytes_per_sec - 1e9).abs() < 1.0);
        assert_eq!(summarise(&b[..1]).overlap_fraction, None);
    }
}
