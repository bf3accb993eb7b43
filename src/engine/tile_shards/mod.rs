//! An index's page tiles sharded over several devices (`--device cuda:all`, `cuda:0,1`; `cpu,cpu`
//! as stand-ins in tests, which have no GPU): the pages split into contiguous shards sized by
//! what each device may hold (`capacity`), each shard loaded onto its device (`build`) and
//! scored there, the shards' top-k merged (`index::sharded_scorer`). A listed set of devices is
//! always used whole; `cuda:all` shards only when one card cannot hold the pages. With one
//! device none of this runs: `resident_tiles` keeps the tiles on the query model's device.

mod build;
mod capacity;
mod hooks;

pub use build::build;
pub use capacity::capacities;

use crate::settings::{DeviceChoice, DeviceSet};
use anyhow::Context;
use pagesight_index::sharded_scorer::Shard;
use pagesight_index::shards::{split, SplitError};
use std::ops::Range;

/// The devices a search's tiles may be sharded over.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardDevices {
    /// As the request names it: tiles loaded for one set are not those of another.
    pub set: DeviceSet,
    /// One entry per shard at most, in the list's order.
    pub devices: Vec<DeviceChoice>,
    /// Named one by one: every device gets a shard even when the first could hold every page.
    pub explicit: bool,
}

impl ShardDevices {
    /// The request's device set, when it has several devices (None: one device, nothing
    /// sharded). A list mixing the CPU and CUDA is refused: their scores differ in precision,
    /// and one ranking must compare like with like.
    pub fn for_request(set: Option<&DeviceSet>) -> anyhow::Result<Option<Self>> {
        let Some(set) = set else { return Ok(None) };
        let devices = set
            .resolve()
            .with_context(|| format!("sharding the index's vectors over {set}"))?;
        if devices.len() < 2 {
            return Ok(None);
        }
        Ok(Some(ShardDevices {
            set: set.clone(),
            devices,
            explicit: matches!(set, DeviceSet::List(_)),
        }))
    }

    pub fn on_cuda(&self) -> bool {
        self.devices
            .iter()
            .any(|d| matches!(d, DeviceChoice::Cuda(_)))
    }

    /// "card" or "device" (CPU stand-ins), for the user's messages.
    pub fn noun(&self) -> &'static str {
        if self.on_cuda() {
            "card"
        } else {
            "device"
        }
    }
}

/// Where a snapshot's page tiles go.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the query model's device, as with one device (`cuda:all` when one card holds them).
    OneDevice,
    /// Device `.0` of the list holds the pages at positions `.1`; devices given no page are
    /// left out, the runs in order and together every page.
    Shards(Vec<(usize, Range<usize>)>),
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Where the pages (`page_bytes`, in the snapshot's order) go on `devices` of `capacity`
/// bytes each; the error says why none of it fits, for the note of a search the CPU scores.
pub fn place(
    page_bytes: &[u64],
    capacity: &[u64],
    devices: &ShardDevices,
) -> Result<Placement, String> {
    let need: u64 = page_bytes.iter().sum();
    if !devices.explicit && capacity.first().is_some_and(|&c| need <= c) {
        return Ok(Placement::OneDevice);
    }
    match split(page_bytes, capacity) {
        Ok(runs) => Ok(Placement::Shards(
            runs.into_iter()
                .enumerate()
                .filter(|(_, r)| !r.is_empty())
                .collect(),
        )),
        Err(SplitError::TooBig { need, capacity: _ }) => {
            let each: Vec<String> = devices
                .devices
                .iter()
                .zip(capacity)
                .map(|(d, &c)| format!("{d} {:.2} GiB", gib(c)))
                .collect();
            let held: u64 = capacity.iter().fold(0u64, |a, &c| a.saturating_add(c));
            let share = match devices.on_cuda() {
                true => "; at most half of a card's free memory is used for search",
                false => "",
            };
            Err(format!(
                "the index's vectors need {:.2} GiB and the {} {}s hold {:.2} GiB of them \
                 ({}{share}): scored on the CPU",
                gib(need),
                devices.devices.len(),
                devices.noun(),
                gib(held),
                each.join(", ")
            ))
        }
    }
}

/// The scorer's words for the shards: what scores (`how`), then each device's pages and the
/// bytes it holds, e.g. "GPU, fused MaxSim kernel, 2 cards: cuda:0 60000 pages 11.00 GiB,
/// cuda:1 40000 pages 7.30 GiB" (`noun`: "card").
pub fn describe(how: &str, noun: &str, shards: &[Shard]) -> String {
    let each: Vec<String> = shards
        .iter()
        .map(|s| {
            let bytes = match s.bytes {
                0 => String::new(),
                b => format!(" {:.2} GiB", gib(b)),
            };
            format!("{} {} pages{bytes}", s.device, s.pages.len())
        })
        .collect();
    let plural = if shards.len() == 1 { "" } else { "s" };
    format!(
        "{how}, {} {noun}{plural}: {}",
        shards.len(),
        each.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ShardDevices {
        let set: DeviceSet = s.parse().unwrap();
        let devices = match &set {
            DeviceSet::List(l) => l.clone(),
            _ => vec![DeviceChoice::Cuda(0), DeviceChoice::Cuda(1)],
        };
        ShardDevices {
            explicit: matches!(set, DeviceSet::List(_)),
            set,
            devices,
        }
    }

    #[test]
    fn one_device_or_a_single_entry_shards_nothing() {
        assert_eq!(ShardDevices::for_request(None).unwrap(), None);
        let one: DeviceSet = "cpu".parse().unwrap();
        assert_eq!(ShardDevices::for_request(Some(&one)).unwrap(), None);
        let two: DeviceSet = "cpu,cpu".parse().unwrap();
        let got = ShardDevices::for_request(Some(&two)).unwrap().unwrap();
        assert!(got.explicit && !got.on_cuda());
        assert_eq!(got.devices.len(), 2);
        let mixed = DeviceSet::List(vec![DeviceChoice::Cpu, DeviceChoice::Cuda(0)]);
        assert!(ShardDevices::for_request(Some(&mixed)).is_err());
    }

    #[test]
    fn all_cards_shard_only_when_the_first_cannot_hold_the_pages() {
        let pages = vec![100u64; 10];
        let all = set("cuda:all");
        assert_eq!(
            place(&pages, &[1000, 1000], &all).unwrap(),
            Placement::OneDevice
        );
        assert_eq!(
            place(&pages, &[600, 600], &all).unwrap(),
            Placement::Shards(vec![(0, 0..5), (1, 5..10)])
        );
        // A list is used whole, even when its first device would do.
        assert_eq!(
            place(&pages, &[1000, 1000], &set("cuda:0,1")).unwrap(),
            Placement::Shards(vec![(0, 0..5), (1, 5..10)])
        );
    }

    #[test]
    fn uneven_capacities_and_devices_given_nothing() {
        let pages = vec![100u64; 8];
        assert_eq!(
            place(&pages, &[600, 200], &set("cpu,cpu")).unwrap(),
            Placement::Shards(vec![(0, 0..6), (1, 6..8)])
        );
        assert_eq!(
            place(&pages, &[0, 800], &set("cpu,cpu")).unwrap(),
            Placement::Shards(vec![(1, 0..8)])
        );
    }

    #[test]
    fn pages_that_fit_nowhere_say_what_each_device_holds() {
        let e = place(&[1 << 30, 1 << 30], &[1 << 29, 1 << 29], &set("cuda:0,1")).unwrap_err();
        assert!(
            e.contains("need 2.00 GiB and the 2 cards hold 1.00 GiB")
                && e.contains("cuda:0 0.50 GiB, cuda:1 0.50 GiB")
                && e.ends_with("scored on the CPU"),
            "{e}"
        );
    }

    #[test]
    fn the_description_names_each_device_its_pages_and_bytes() {
        let shard = |device: &str, pages: Range<usize>, bytes: u64| Shard {
            device: device.into(),
            pages,
            bytes,
            scorer: Box::new(pagesight_index::search::CpuExact(
                pagesight_index::maxsim::detected_isa(),
            )),
        };
        let gib = 1u64 << 30;
        let s = describe(
            "GPU, fused MaxSim kernel",
            "card",
            &[
                shard("cuda:0", 0..60000, 11 * gib),
                shard("cuda:1", 60000..100000, gib * 73 / 10),
            ],
        );
        assert_eq!(
            s,
            "GPU, fused MaxSim kernel, 2 cards: cuda:0 60000 pages 11.00 GiB, \
             cuda:1 40000 pages 7.30 GiB"
        );
        let s = describe("CPU exact MaxSim", "shard", &[shard("cpu", 0..3, 0)]);
        assert_eq!(s, "CPU exact MaxSim, 1 shard: cpu 3 pages");
    }
}
