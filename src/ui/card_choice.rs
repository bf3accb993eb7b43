//! Which CUDA cards an ingest runs on, on a machine with several (the engine's `DeviceInfo`
//! lists them): one checkbox per card, every card ticked unless the user unticked it (the
//! settings remember the unticked ones, so a card added later starts ticked). Start then sends
//! `cuda:N` for one ticked card, `cuda:0,2,…` for several. With fewer than two cards, or the
//! CPU chosen, there is nothing to choose and the form's one device is used. A search uses the
//! same cards ([`for_search`]).

use pagesight_engine::event::CardInfo;
use pagesight_engine::{DeviceChoice, DeviceSet};

/// Whether the card checkboxes apply to `device` on a machine with `cards`.
pub fn applies(device: DeviceChoice, cards: &[CardInfo]) -> bool {
    cards.len() > 1 && device != DeviceChoice::Cpu
}

/// The devices of the ticked cards; None when the choice does not apply (or nothing is ticked).
pub fn chosen(device: DeviceChoice, cards: &[CardInfo], unticked: &[usize]) -> Option<DeviceSet> {
    if !applies(device, cards) {
        return None;
    }
    let ticked: Vec<DeviceChoice> = cards
        .iter()
        .filter(|c| !unticked.contains(&c.ordinal))
        .map(|c| DeviceChoice::Cuda(c.ordinal))
        .collect();
    match ticked.as_slice() {
        [] => None,
        [one] => Some(DeviceSet::One(*one)),
        _ => Some(DeviceSet::List(ticked)),
    }
}

/// The devices a search's page tiles may use: every card ticked (the default) is `cuda:all`,
/// which shards the tiles only when the first card cannot hold them all; some unticked is the
/// list of the ticked ones, the tiles sharded over them. None where [`chosen`] gives None or
/// one card.
pub fn for_search(
    device: DeviceChoice,
    cards: &[CardInfo],
    unticked: &[usize],
) -> Option<DeviceSet> {
    let all_ticked = !cards.iter().any(|c| unticked.contains(&c.ordinal));
    match chosen(device, cards, unticked)? {
        DeviceSet::List(_) if all_ticked => Some(DeviceSet::AllCuda),
        DeviceSet::One(_) => None,
        several => Some(several),
    }
}

/// One checkbox per card; the last ticked card cannot be unticked.
pub fn show(ui: &mut egui::Ui, cards: &[CardInfo], unticked: &mut Vec<usize>) {
    let ticked = cards
        .iter()
        .filter(|c| !unticked.contains(&c.ordinal))
        .count();
    ui.horizontal_wrapped(|ui| {
        for c in cards {
            let mut on = !unticked.contains(&c.ordinal);
            let label = format!(
                "cuda:{} {} ({:.0} GiB)",
                c.ordinal,
                c.name,
                c.memory_total_bytes as f64 / (1u64 << 30) as f64
            );
            let resp = ui
                .checkbox(&mut on, label)
                .on_hover_text("one model replica per ticked card; at least one card");
            if resp.changed() {
                if on {
                    unticked.retain(|&n| n != c.ordinal);
                } else if ticked > 1 {
                    unticked.push(c.ordinal);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cards(n: usize) -> Vec<CardInfo> {
        (0..n)
            .map(|ordinal| CardInfo {
                ordinal,
                name: "NVIDIA H100".into(),
                memory_total_bytes: 80 << 30,
                fp8: true,
            })
            .collect()
    }

    #[test]
    fn a_search_uses_the_ticked_cards() {
        let auto = DeviceChoice::Auto;
        // Every card ticked: all of them, sharded only when one cannot hold the tiles.
        assert_eq!(for_search(auto, &cards(3), &[]), Some(DeviceSet::AllCuda));
        // Some unticked: the tiles sharded over the ticked ones.
        assert_eq!(
            for_search(auto, &cards(3), &[1]),
            Some(DeviceSet::List(vec![
                DeviceChoice::Cuda(0),
                DeviceChoice::Cuda(2)
            ]))
        );
        // One ticked card, one card, or the CPU: the request's one device.
        assert_eq!(for_search(auto, &cards(3), &[0, 1]), None);
        assert_eq!(for_search(auto, &cards(1), &[]), None);
        assert_eq!(for_search(DeviceChoice::Cpu, &cards(3), &[]), None);
    }
}
