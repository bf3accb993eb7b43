//! What the engine computes on: the device, whether CUDA was built in, VRAM and driver, and
//! each CUDA card of the machine.

use super::event::DeviceInfo;
use super::gpu_monitor::GpuMonitor;
use super::settings::DeviceChoice;

/// Describes `choice` as it would be opened, without loading a model.
pub fn describe(choice: DeviceChoice) -> DeviceInfo {
    let cuda_built = cfg!(feature = "cuda");
    let index = match choice {
        DeviceChoice::Cuda(n) => n,
        _ => 0,
    };
    let monitor = GpuMonitor::open_cuda(index);
    let sample = monitor.as_ref().ok().and_then(|m| m.sample().ok());
    let cuda_available = cuda_built && candle_core::utils::cuda_is_available() && monitor.is_ok();
    let unavailable_reason = if !cuda_built {
        Some("this build has no CUDA support (built without the `cuda` feature)".to_string())
    } else if let Err(e) = &monitor {
        Some(e.clone())
    } else if !cuda_available {
        Some("CUDA is not available on this machine".to_string())
    } else {
        None
    };
    let use_gpu = cuda_available && choice != DeviceChoice::Cpu;
    let name = match (&monitor, use_gpu) {
        (Ok(m), true) => format!(
            "{} (cuda:{index})",
            m.name().unwrap_or_else(|| "NVIDIA GPU".into())
        ),
        _ => format!(
            "cpu ({} threads)",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        ),
    };
    DeviceInfo {
        name,
        cuda_built,
        cuda_available,
        vram_total_bytes: sample.as_ref().map(|s| s.memory_total_bytes),
        vram_used_bytes: sample.as_ref().map(|s| s.memory_used_bytes),
        driver: monitor.as_ref().ok().and_then(|m| m.driver()),
        unavailable_reason,
        cards: if cuda_available {
            super::cuda_cards::list()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cpu_build_says_why_gpu_is_unavailable() {
        if cfg!(feature = "cuda") {
            return;
        }
        let d = describe(DeviceChoice::Auto);
        assert!(!d.cuda_available);
        assert!(d.name.starts_with("cpu"));
        assert!(d.unavailable_reason.unwrap().contains("cuda"));
        assert!(d.cards.is_empty());
    }
}
