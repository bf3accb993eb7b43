//! The cards a run computes on, each sampled by a `GpuSampler` of its own: one per distinct CUDA
//! ordinal of the run's devices (`cuda:0,2` samples cards 0 and 2; `cuda:2` card 2, not card 0;
//! a CPU run none). What a metrics tick reads: the first card's sample, every card's, and the
//! card of each replica.

use super::event::{CardSample, GpuSample, ReplicaSummary};
use super::gpu_monitor::{GpuMonitor, GpuSampler};
use super::settings::DeviceChoice;
use std::time::Duration;

pub struct GpuCards {
    /// Each replica's card, by its place in the device list (None: it computes on the CPU).
    of_replica: Vec<Option<usize>>,
    /// One sampler per distinct card, in the order the device list first names it.
    samplers: Vec<(usize, GpuSampler)>,
}

/// What the cards say at one tick.
pub struct CardsNow {
    /// The first card's sample (the primary device's), or why there is none.
    pub first: Option<GpuSample>,
    pub unavailable: Option<String>,
    /// Every card with a sample.
    pub cards: Vec<CardSample>,
}

/// The CUDA card `device` computes on: `cuda:N` → N, `auto` → 0 where CUDA is used.
fn ordinal(device: DeviceChoice) -> Option<usize> {
    match device {
        DeviceChoice::Cuda(n) => Some(n),
        DeviceChoice::Auto => device.will_use_cuda().then_some(0),
        DeviceChoice::Cpu => None,
    }
}

impl GpuCards {
    /// Samples each card of `devices` through NVML every `interval`.
    pub fn open(devices: &[DeviceChoice], interval: Duration) -> Self {
        Self::start(devices, |n| {
            GpuSampler::start(GpuMonitor::open_cuda(n), interval)
        })
    }

    /// As `open`, with `sampler` making the sampler of card N (tests feed fake cards).
    pub fn start(devices: &[DeviceChoice], mut sampler: impl FnMut(usize) -> GpuSampler) -> Self {
        let of_replica: Vec<Option<usize>> = devices.iter().map(|&d| ordinal(d)).collect();
        let mut samplers: Vec<(usize, GpuSampler)> = Vec::new();
        for n in of_replica.iter().flatten() {
            if !samplers.iter().any(|(m, _)| m == n) {
                samplers.push((*n, sampler(*n)));
            }
        }
        GpuCards {
            of_replica,
            samplers,
        }
    }

    fn latest(&self, ordinal: usize) -> (Option<GpuSample>, Option<String>) {
        self.samplers
            .iter()
            .find(|(n, _)| *n == ordinal)
            .map_or((None, None), |(_, s)| s.latest())
    }

    pub fn now(&self) -> CardsNow {
        let (first, unavailable) = match self.samplers.first() {
            Some((_, s)) => s.latest(),
            None => (None, Some("the run computes on the CPU".into())),
        };
        let cards = self
            .samplers
            .iter()
            .filter_map(|(n, s)| {
                s.latest().0.map(|sample| CardSample {
                    ordinal: *n,
                    sample,
                })
            })
            .collect();
        CardsNow {
            first,
            unavailable,
            cards,
        }
    }

    /// `replicas` with each one's card sample filled in.
    pub fn attach(&self, mut replicas: Vec<ReplicaSummary>) -> Vec<ReplicaSummary> {
        for r in &mut replicas {
            r.gpu = self
                .of_replica
                .get(r.replica)
                .copied()
                .flatten()
                .and_then(|n| self.latest(n).0);
        }
        replicas
    }
}
