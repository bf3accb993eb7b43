//! GPU utilisation, memory and PCIe throughput through NVML. NVML is loaded at run time: with no
//! GPU or no driver library the monitor says why and the metrics carry that reason instead.

use super::event::GpuSample;
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use nvml_wrapper::enum_wrappers::device::PcieUtilCounter;
use nvml_wrapper::Nvml;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct GpuMonitor {
    nvml: Nvml,
    index: u32,
}

impl GpuMonitor {
    /// Opens NVML for the card CUDA calls `cuda:{ordinal}`. NVML numbers every card of the
    /// machine in PCI order, CUDA only those CUDA_VISIBLE_DEVICES lets it see, fastest first
    /// unless CUDA_DEVICE_ORDER says otherwise: the card is found by the PCI bus id the CUDA
    /// driver gives for the ordinal. Where the driver is not asked (a build without CUDA) the
    /// ordinal is taken for NVML's index — right unless those variables renumber the cards.
    pub fn open_cuda(ordinal: usize) -> Result<Self, String> {
        let Some(bus) = super::cuda_cards::pci_bus_id(ordinal) else {
            return Self::open(ordinal as u32);
        };
        let nvml = init()?;
        let index = nvml
            .device_by_pci_bus_id(bus.as_str())
            .and_then(|d| d.index())
            .map_err(|e| format!("NVML finds no GPU at PCI {bus} (cuda:{ordinal}): {e}"))?;
        Ok(GpuMonitor { nvml, index })
    }

    /// Opens NVML for GPU `index` (NVML's numbering); the error is a sentence for the user.
    pub fn open(index: u32) -> Result<Self, String> {
        let nvml = init()?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML could not count GPUs: {e}"))?;
        if index >= count {
            return Err(format!(
                "no NVIDIA GPU with index {index} (NVML sees {count})"
            ));
        }
        Ok(GpuMonitor { nvml, index })
    }

    pub fn name(&self) -> Option<String> {
        self.device().ok()?.name().ok()
    }

    pub fn driver(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    fn device(&self) -> Result<nvml_wrapper::Device<'_>, String> {
        self.nvml
            .device_by_index(self.index)
            .map_err(|e| e.to_string())
    }

    /// Bytes used and total on the GPU (all processes), without the slow PCIe counters.
    pub fn memory(&self) -> Result<(u64, u64), String> {
        let mem = self.device()?.memory_info().map_err(|e| e.to_string())?;
        Ok((mem.used, mem.total))
    }

    /// Device memory used by process `pid` on this GPU (its CUDA context and allocations), as
    /// NVML accounts it; None when NVML does not list the process (no context there).
    pub fn process_memory(&self, pid: u32) -> Result<Option<u64>, String> {
        use nvml_wrapper::enums::device::UsedGpuMemory;
        let procs = self
            .device()?
            .running_compute_processes()
            .map_err(|e| e.to_string())?;
        Ok(procs
            .iter()
            .find(|p| p.pid == pid)
            .and_then(|p| match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b),
                UsedGpuMemory::Unavailable => None,
            }))
    }

    pub fn sample(&self) -> Result<GpuSample, String> {
        let d = self.device()?;
        let util = d.utilization_rates().map_err(|e| e.to_string())?;
        let mem = d.memory_info().map_err(|e| e.to_string())?;
        // NVML reports PCIe throughput in KB/s over a ~20 ms window.
        let kbps = |c| d.pcie_throughput(c).ok().map(|v| v as f64 * 1024.0);
        Ok(GpuSample {
            utilisation: util.gpu as f32 / 100.0,
            memory_used_bytes: mem.used,
            memory_total_bytes: mem.total,
            pcie_tx_bytes_per_sec: kbps(PcieUtilCounter::Send),
            pcie_rx_bytes_per_sec: kbps(PcieUtilCounter::Receive),
        })
    }
}

fn init() -> Result<Nvml, String> {
    Nvml::init().map_err(|e| format!("no NVIDIA driver library (NVML): {e}"))
}

/// NVML read on a thread of its own, so that whoever wants a sample never waits for one. Each
/// PCIe throughput counter blocks for NVML's sampling window: read on the ingest thread at every
/// metrics tick, the two counters stalled the pump for a large share of its time (counted as
/// render wait, and late enough to put async copies on the critical path; `bench/gpu-notes.md`).
pub struct GpuSampler {
    latest: Arc<Mutex<Option<Result<GpuSample, String>>>>,
    /// Dropping it stops the thread (its `recv_timeout` sees the disconnect).
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GpuSampler {
    /// Samples `monitor` every `interval` until dropped; with no monitor, `latest` gives its
    /// reason and no thread runs.
    pub fn start(monitor: Result<GpuMonitor, String>, interval: Duration) -> Self {
        match monitor {
            Ok(m) => Self::start_with(move || m.sample(), interval),
            Err(why) => GpuSampler {
                latest: Arc::new(Mutex::new(Some(Err(why)))),
                stop: None,
                thread: None,
            },
        }
    }

    /// As `start`, with any source of samples.
    pub fn start_with(
        mut sample: impl FnMut() -> Result<GpuSample, String> + Send + 'static,
        interval: Duration,
    ) -> Self {
        let latest = Arc::new(Mutex::new(None));
        let (stop, stopped) = bounded::<()>(0);
        let shared = latest.clone();
        let thread = std::thread::Builder::new()
            .name("gpu-monitor".into())
            .spawn(move || loop {
                let s = sample();
                if let Ok(mut l) = shared.lock() {
                    *l = Some(s);
                }
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            })
            .ok();
        GpuSampler {
            latest,
            stop: Some(stop),
            thread,
        }
    }

    /// The newest sample, or why there is none; `(None, None)` before the first one is in.
    pub fn latest(&self) -> (Option<GpuSample>, Option<String>) {
        match self.latest.lock().ok().and_then(|l| l.clone()) {
            Some(Ok(s)) => (Some(s), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        }
    }
}

impl Drop for GpuSampler {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(used: u64) -> GpuSample {
        GpuSample {
            utilisation: 0.5,
            memory_used_bytes: used,
            memory_total_bytes: 1 << 30,
            pcie_tx_bytes_per_sec: None,
            pcie_rx_bytes_per_sec: None,
        }
    }

    #[test]
    fn a_sample_in_progress_never_blocks_the_reader() {
        // The first sample waits until the test lets it go (as NVML's PCIe counters wait for
        // their window): meanwhile `latest` answers at once, with nothing yet.
        let (release, gate) = bounded::<()>(0);
        let mut n = 0;
        let sampler = GpuSampler::start_with(
            move || {
                if n == 0 {
                    let _ = gate.recv();
                }
                n += 1;
                Ok(sample(n))
            },
            Duration::from_millis(1),
        );
        assert_eq!(sampler.latest(), (None, None));
        release.send(()).unwrap();
        let got = loop {
            if let (Some(s), None) = sampler.latest() {
                break s;
            }
            std::thread::yield_now();
        };
        assert!(got.memory_used_bytes >= 1);
        drop(sampler); // joins the thread
    }

    #[test]
    fn no_monitor_gives_its_reason() {
        let s = GpuSampler::start(
            Err("no NVIDIA driver library".into()),
            Duration::from_secs(1),
        );
        assert_eq!(s.latest(), (None, Some("no NVIDIA driver library".into())));
    }
}
