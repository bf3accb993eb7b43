//! The Performance view's table of a multi-device run's model replicas: each device's pages,
//! pages/s, busy share and H2D rate, and the total.

use pagesight_engine::event::ReplicaSummary;

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
                "replica", "device", "pages", "pages/s", "busy", "H2D GB/s", "state",
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
                match &r.failed {
                    Some(why) => ui.label("dropped").on_hover_text(why),
                    None => ui.label("running"),
                };
                ui.end_row();
            }
            ui.strong("total");
            ui.label("");
            ui.strong(replicas.iter().map(|r| r.pages).sum::<u64>().to_string());
            ui.strong(format!(
                "{:.2}",
                replicas.iter().map(|r| r.pages_per_sec).sum::<f64>()
            ));
            ui.end_row();
        });
}
