//! GPU utilisation, memory and PCIe throughput through NVML. NVML is loaded at run time: with no
//! GPU or no driver library the monitor says why and the metrics carry that reason instead.

use super::event::GpuSample;
use nvml_wrapper::enum_wrappers::device::PcieUtilCounter;
use nvml_wrapper::Nvml;

pub struct GpuMonitor {
    nvml: Nvml,
    index: u32,
}

impl GpuMonitor {
    /// Opens NVML for GPU `index`; the error is a sentence for the user.
    pub fn open(index: u32) -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| format!("no NVIDIA driver library (NVML): {e}"))?;
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
        self.nvml.device_by_index(self.index).ok()?.name().ok()
    }

    pub fn driver(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }

    pub fn sample(&self) -> Result<GpuSample, String> {
        let d = self
            .nvml
            .device_by_index(self.index)
            .map_err(|e| e.to_string())?;
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
