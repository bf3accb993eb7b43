//! What the CUDA driver says about the machine's cards, numbered as `cuda:N` numbers them: each
//! one's name and memory (the GUI's card choice) and its PCI bus id (through which NVML, which
//! numbers cards its own way, finds the card a CUDA ordinal means). No CUDA context is made. In a
//! build without CUDA the driver is not asked: no cards, no bus ids.

use super::event::CardInfo;
use crate::settings::{DeviceChoice, DeviceSet};

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
                use candle_core::cuda_backend::cudarc::driver::sys::CUdevice_attribute as A;
                // SAFETY: as above.
                let attr = |a: A| unsafe { device::get_attribute(dev, a) }.unwrap_or(0);
                let capability = (
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
                );
                Some(CardInfo {
                    ordinal: i as usize,
                    name: device::get_name(dev).unwrap_or_else(|_| "NVIDIA GPU".into()),
                    memory_total_bytes: total as u64,
                    fp8: pagesight_model::quant::fp8::has_fp8_tensor_cores(capability),
                })
            })
            .collect()
    }
    #[cfg(not(feature = "cuda"))]
    Vec::new()
}

/// Whether every card `set` runs on has FP8 tensor cores, by `cards` (as [`list`] gives them):
/// what makes FP8 GEMMs the default. False with the CPU in the set, and for a card not listed.
pub fn fp8_for(set: &DeviceSet, cards: &[CardInfo]) -> bool {
    let devices: Vec<DeviceChoice> = match set {
        DeviceSet::AllCuda => cards
            .iter()
            .map(|c| DeviceChoice::Cuda(c.ordinal))
            .collect(),
        DeviceSet::One(d) => vec![*d],
        DeviceSet::List(l) => l.clone(),
    };
    let has_fp8 = |d: &DeviceChoice| {
        let ordinal = match d {
            DeviceChoice::Cuda(n) => *n,
            // Auto runs on card 0 when there is one (with no card listed, on the CPU).
            DeviceChoice::Auto => 0,
            DeviceChoice::Cpu => return false,
        };
        cards.iter().any(|c| c.ordinal == ordinal && c.fp8)
    };
    !devices.is_empty() && devices.iter().all(has_fp8)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn card(ordinal: usize, fp8: bool) -> CardInfo {
        CardInfo {
            ordinal,
            name: format!("card {ordinal}"),
            memory_total_bytes: 1 << 30,
            fp8,
        }
    }

    #[test]
    fn fp8_is_the_default_only_where_every_card_of_the_run_has_it() {
        let cards = [card(0, true), card(1, false), card(2, true)];
        let one = |d| DeviceSet::One(d);
        assert!(fp8_for(&one(DeviceChoice::Cuda(0)), &cards));
        assert!(fp8_for(&one(DeviceChoice::Auto), &cards));
        assert!(!fp8_for(&one(DeviceChoice::Cuda(1)), &cards));
        assert!(
            !fp8_for(&one(DeviceChoice::Cuda(7)), &cards),
            "a card not listed"
        );
        assert!(!fp8_for(&one(DeviceChoice::Cpu), &cards));
        assert!(!fp8_for(&one(DeviceChoice::Auto), &[]), "no card: the CPU");
        let list =
            |l: &[usize]| DeviceSet::List(l.iter().map(|&n| DeviceChoice::Cuda(n)).collect());
        assert!(fp8_for(&list(&[0, 2]), &cards));
        assert!(
            !fp8_for(&list(&[0, 1]), &cards),
            "one index, one arithmetic"
        );
        assert!(!fp8_for(&DeviceSet::AllCuda, &cards));
        assert!(fp8_for(&DeviceSet::AllCuda, &cards[..1]));
    }
}
