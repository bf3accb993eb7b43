//! The egui desktop app. Talks to the engine only through its channels.

/// Opens the desktop window (placeholder until the app issue lands).
pub fn run_app() -> anyhow::Result<()> {
    let options = eframe::NativeOptions { renderer: eframe::Renderer::Glow, ..Default::default() };
    eframe::run_native("Pagesight", options, Box::new(|_cc| Ok(Box::new(Placeholder))))
        .map_err(|e| anyhow::anyhow!("could not open the window: {e} (no display? use the headless subcommands, see --help)"))
}

struct Placeholder;

impl eframe::App for Placeholder {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show_inside(ui, |ui| {
            ui.heading("Pagesight");
        });
    }
}
