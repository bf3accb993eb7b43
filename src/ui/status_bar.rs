//! The status bar: device, model, VRAM, index size, and what the engine is doing.

use super::format;
use pagesight_engine::event::{DeviceInfo, GpuSample, IndexStats};

#[derive(Default)]
pub struct StatusInfo {
    pub device: Option<DeviceInfo>,
    pub model: Option<String>,
    pub index: Option<IndexStats>,
    /// The latest NVML sample, fresher than the device report's VRAM numbers.
    pub gpu: Option<GpuSample>,
    pub activity: String,
    pub engine_down: bool,
}

impl StatusInfo {
    pub fn show(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if self.engine_down {
                ui.label(
                    egui::RichText::new("engine not running").color(ui.visuals().error_fg_color),
                );
                ui.separator();
            }
            let device = self
                .device
                .as_ref()
                .map_or("device: …".to_owned(), |d| format!("device: {}", d.name));
            let hover = self
                .device
                .as_ref()
                .and_then(|d| d.unavailable_reason.clone());
            let r = ui.label(device);
            if let Some(h) = hover {
                r.on_hover_text(h);
            }
            ui.separator();
            if let Some(v) = self.vram() {
                ui.label(v);
                ui.separator();
            }
            ui.label(format!("model: {}", self.model.as_deref().unwrap_or("–")));
            ui.separator();
            match &self.index {
                Some(s) => ui.label(format!(
                    "index: {} pages · {} files · {}",
                    s.pages,
                    s.files,
                    format::bytes(s.bytes_on_disk)
                )),
                None => ui.label("index: –"),
            }
            .on_hover_text(
                self.index
                    .as_ref()
                    .map_or(String::new(), |s| s.path.display().to_string()),
            );
            if !self.activity.is_empty() {
                ui.separator();
                ui.label(&self.activity);
            }
        });
    }

    fn vram(&self) -> Option<String> {
        if let Some(g) = &self.gpu {
            return Some(format!(
                "VRAM {} / {}",
                format::bytes(g.memory_used_bytes),
                format::bytes(g.memory_total_bytes)
            ));
        }
        let d = self.device.as_ref()?;
        let total = d.vram_total_bytes?;
        Some(match d.vram_used_bytes {
            Some(u) => format!("VRAM {} / {}", format::bytes(u), format::bytes(total)),
            None => format!("VRAM {}", format::bytes(total)),
        })
    }
}
