//! What the CUDA driver says about the machine's cards, numbered as `cuda:N` numbers them: each
//! one's name and memory (the GUI's card choice) and its PCI bus id (through which NVML, which
//! numbers cards its own way, finds the card a CUDA ordinal means). No CUDA context is made. In a
//! build without CUDA the driver is not asked: no cards, no bus ids.

use super::event::CardInfo;

/// Every CUDA card, by ordinal (empty without CUDA or without a driver).
pub fn list() -> Vec<CardInfo> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::result::{self, device};
        if result::init().is_err() {
            return Vec::new();
        }
        let count = device::get_count().unwrap_or(0).max(0);
        (0..count)
            .filter_map(|i| {
                let dev = device::get(i).ok()?;
                // SAFETY: `dev` is a device handle `device::get` returned.
                let total = unsafe { device::total_mem(dev) }.ok()?;
                Some(CardInfo {
                    ordinal: i as usize,
                    name: device::get_name(dev).unwrap_or_else(|_| "NVIDIA GPU".into()),
                    memory_total_bytes: total as u64,
                })
            })
            .collect()
    }
    #[cfg(not(feature = "cuda"))]
    Vec::new()
}

/// CUDA device `ordinal`'s PCI bus id as NVML accepts it (`domain:bus:device.0`, hex); None
/// without CUDA or when the driver cannot say.
pub fn pci_bus_id(ordinal: usize) -> Option<String> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::result::{self, device};
        use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
        result::init().ok()?;
        let dev = device::get(ordinal as i32).ok()?;
        // SAFETY: `dev` is a device handle `device::get` returned.
        let attr = |a: A| unsafe { device::get_attribute(dev, a) }.ok();
        let domain = attr(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?;
        let bus = attr(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?;
        let slot = attr(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?;
        Some(format!("{domain:04x}:{bus:02x}:{slot:02x}.0"))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = ordinal;
        None
    }
}
