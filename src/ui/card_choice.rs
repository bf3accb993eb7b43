//! Which CUDA cards an ingest runs on, on a machine with several (the engine's `DeviceInfo`
//! lists them): one checkbox per card, every card ticked unless the user unticked it (the
//! settings remember the unticked ones, so a card added later starts ticked). Start then sends
//! `cuda:N` for one ticked card, `cuda:0,2,…` for several. With fewer than two cards, or the
//! CPU chosen, there is nothing to choose and the form's one device is used.

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
