//! The Performance view's table of a multi-device run's model replicas: each device's pages,
//! pages/s, busy share, H2D rate and its card's utilisation, memory and PCIe rates, and the
//! total (pages/s summed; over the distinct cards mean utilisation, memory summed).

use pagesight_engine::event::{GpuSample, ReplicaSummary};
use pagesight_engine::replica_figures::ReplicaTotal;

const GIB: f64 = (1u64 << 30) as f64;

/// `elapsed` is the run's time so far (the busy share's denominator).
pub fn show(ui: &mut egui::Ui, replicas: &[ReplicaSummary], elapsed: f64) {
    if replicas.is_empty() {
        return;
    }
    ui.label(egui::RichText::new("Devices").heading());
    egui::Grid::new("replica-table")
        .striped(true)
        .show(ui, |ui| {
            for h in [
                "replica",
                "device",
                "pages",
                "pages/s",
                "busy",
                "H2D GB/s",
                "GPU util",
                "memory GiB",
                "PCIe rx/tx GB/s",
                "state",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for r in replicas {
                ui.label(r.replica.to_string());
                ui.label(&r.device);
                ui.label(r.pages.to_string());
                ui.label(format!("{:.2}", r.pages_per_sec));
                ui.label(format!("{:.0}%", 100.0 * r.busy_secs / elapsed.max(1e-9)));
                ui.label(format!("{:.1}", r.h2d_bytes_per_sec / 1e9));
                for text in card_cells(r.gpu.as_ref()) {
                    ui.label(text);
                }
                match &r.failed {
                    Some(why) => ui.label("dropped").on_hover_text(why),
                    None => ui.label("running"),
                };
                ui.end_row();
            }
            let total = ReplicaTotal::of(replicas);
            ui.strong("total");
            ui.label("");
            ui.strong(total.pages.to_string());
            ui.strong(format!("{:.2}", total.pages_per_sec));
            ui.label("");
            ui.label("");
            let [util, memory, pcie] = card_cells(total.as_sample().as_ref());
            ui.strong(util).on_hover_text(format!(
                "mean over {} card(s); memory and PCIe summed",
                total.cards
            ));
            ui.strong(memory);
            ui.strong(pcie);
            ui.end_row();
        });
}

/// Utilisation, memory used / total and PCIe rates of one card ("-" where there is none).
fn card_cells(g: Option<&GpuSample>) -> [String; 3] {
    let Some(g) = g else {
        return ["-".into(), "-".into(), "-".into()];
    };
    let gb = |v: Option<f64>| v.map_or("-".to_string(), |b| format!("{:.1}", b / 1e9));
    [
        format!("{:.0}%", 100.0 * g.utilisation),
        format!(
            "{:.1} / {:.1}",
            g.memory_used_bytes as f64 / GIB,
            g.memory_total_bytes as f64 / GIB
        ),
        format!(
            "{} / {}",
            gb(g.pcie_rx_bytes_per_sec),
            gb(g.pcie_tx_bytes_per_sec)
        ),
    ]
}
