//! The Corpus form: folder and model up front; the engineering choices (device, cards, precision,
//! quantisation, batch, workers, transfer mode, visual-token budget) under a collapsible
//! "Advanced" section, closed by default (the settings remember it), each row with a one-line
//! hint in plain words. Closed, one weak line says what Start will use, so nothing is hidden.

use super::card_choice;
use super::model_choice;
use super::settings::UiSettings;
use super::transfer_choice;
use pagesight_engine::event::CardInfo;
use pagesight_engine::settings::Precision;
use pagesight_engine::{Compute, DType, DeviceChoice, IngestSettings, Quant, QuantScope};

/// What the form shows besides the settings it edits.
pub struct FormContext<'a> {
    /// The index Start writes (the corpus's, or the one a new corpus gets).
    pub index_hint: &'a str,
    /// What "best for this device" resolves to now (`PagesightApp::best_precision`).
    pub best_precision: Precision,
    /// The machine's CUDA cards (the engine's `DeviceInfo`; empty until it answers).
    pub cards: &'a [CardInfo],
    /// Why the transfer modes cannot be chosen (no CUDA), if so.
    pub transfer_blocked: Option<&'a str>,
    /// The settings Start would send now: what the closed section's summary line tells.
    pub start_settings: &'a IngestSettings,
    /// Whether CUDA is usable (where `auto` puts the model).
    pub cuda: bool,
}

/// One line for each Advanced row: what it does and when to change it.
pub mod hints {
    pub const DEVICE: &str = "where the model runs: auto takes the GPU when there is one; \
         cpu works everywhere but is many times slower";
    pub const CARDS: &str = "one model replica per ticked card; untick a card another job needs";
    pub const PRECISION: &str = "keep this on: the fastest precision measured for this device, \
         or the one an existing index was made with";
    pub const QUANT: &str = "with the box above off: 4-bit weights (nf4, q4k) are smaller and \
         faster on a GPU; an index takes vectors of one precision only";
    pub const BATCH: &str = "pages embedded together: larger is faster on a GPU until memory \
         runs out (it then halves itself); 1–4 on the CPU";
    pub const WORKERS: &str = "processes rendering PDF pages side by side: raise it if the \
         model waits for pages, lower it to spare memory";
    pub const TRANSFER: &str = "how pages reach the GPU: async overlaps the copy with compute \
         (fastest on a GPU); sync/pageable for comparison";
    pub const VISUAL_TOKENS: &str = "how finely a page is seen: the checkpoint's own is what it \
         was trained for; fewer tokens are faster but miss small print";
}

/// Draws the form; returns whether Browse… was clicked.
pub fn show(
    ui: &mut egui::Ui,
    settings: &mut UiSettings,
    cx: &FormContext<'_>,
    active: bool,
) -> bool {
    let mut browse = false;
    egui::Grid::new("ingest-form")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            let label = ui.label("Folder");
            ui.horizontal(|ui| {
                let edit = egui::TextEdit::singleline(&mut settings.folder)
                    .hint_text("folder with your PDFs (or drop it on the window)")
                    .desired_width(420.0);
                ui.add_enabled(!active, edit).labelled_by(label.id);
                browse = ui
                    .add_enabled(!active, egui::Button::new("Browse…"))
                    .clicked();
                let recent = settings.recent_folders.clone();
                ui.add_enabled_ui(!active && !recent.is_empty(), |ui| {
                    ui.menu_button("Recent", |ui| {
                        for f in recent {
                            if ui.button(f.display().to_string()).clicked() {
                                settings.folder = f.display().to_string();
                                ui.close();
                            }
                        }
                    });
                });
            });
            ui.end_row();

            ui.label("Index");
            ui.label(egui::RichText::new(cx.index_hint).weak());
            ui.end_row();

            let label = ui.label("Model");
            ui.add_enabled_ui(!active, |ui| {
                model_choice::show(ui, &mut settings.model, label.id)
            });
            ui.end_row();
        });

    let open = settings.advanced_open;
    let header = egui::CollapsingHeader::new("Advanced")
        .id_salt("corpus-advanced")
        .open(Some(open))
        .show(ui, |ui| {
            ui.add_enabled_ui(!active, |ui| advanced(ui, settings, cx));
        });
    if header.header_response.clicked() {
        settings.advanced_open = !open;
    }
    if !open {
        ui.label(egui::RichText::new(summary(cx.start_settings, cx.cuda)).weak());
    }
    browse
}

/// One Advanced row: its name, then its controls with the hint under them as weak text.
fn row(ui: &mut egui::Ui, name: &str, hint: &str, controls: impl FnOnce(&mut egui::Ui)) {
    ui.label(name);
    ui.vertical(|ui| {
        ui.horizontal(controls);
        ui.label(egui::RichText::new(hint).weak());
    });
    ui.end_row();
}

fn advanced(ui: &mut egui::Ui, settings: &mut UiSettings, cx: &FormContext<'_>) {
    egui::Grid::new("ingest-advanced")
        .num_columns(2)
        .spacing([12.0, 8.0])
        .show(ui, |ui| {
            row(ui, "Device", hints::DEVICE, |ui| {
                for d in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(0)] {
                    // With several cards the boxes below say which: the button is "cuda".
                    let name = match d {
                        DeviceChoice::Cuda(_) if cx.cards.len() > 1 => "cuda".to_string(),
                        d => d.to_string(),
                    };
                    ui.selectable_value(&mut settings.model.device, d, name);
                }
            });
            if card_choice::applies(settings.model.device, cx.cards) {
                row(ui, "Cards", hints::CARDS, |ui| {
                    card_choice::show(ui, cx.cards, &mut settings.unticked_cards)
                });
            }
            row(ui, "Precision", hints::PRECISION, |ui| {
                ui.checkbox(&mut settings.best_precision, "best for this device");
                if settings.best_precision {
                    let p = cx.best_precision;
                    ui.label(
                        egui::RichText::new(precision_text(
                            p.dtype,
                            p.quant,
                            p.quant_scope,
                            p.compute,
                        ))
                        .weak(),
                    );
                }
            });
            row(ui, "Quantisation", hints::QUANT, |ui| {
                ui.add_enabled_ui(!settings.best_precision, |ui| quantisation(ui, settings));
            });
            row(ui, "Batch", hints::BATCH, |ui| {
                ui.checkbox(&mut settings.best_batch, "best size for this device");
                if settings.best_batch {
                    let best = settings.start_batch(cx.cuda);
                    ui.label(egui::RichText::new(format!("batch {best}")).weak());
                } else {
                    ui.add(
                        egui::DragValue::new(&mut settings.batch_size)
                            .range(1..=256)
                            .prefix("batch "),
                    );
                }
            });
            row(ui, "Workers", hints::WORKERS, |ui| {
                ui.add(
                    egui::DragValue::new(&mut settings.workers)
                        .range(1..=64)
                        .prefix("workers "),
                );
            });
            let blocked = cx.transfer_blocked;
            let hint = match blocked {
                Some(why) => format!("{} — unavailable here: {why}", hints::TRANSFER),
                None => hints::TRANSFER.to_string(),
            };
            row(ui, "Transfer", &hint, |ui| {
                transfer_choice::show(ui, &mut settings.transfer, blocked);
            });
            row(ui, "Visual tokens", hints::VISUAL_TOKENS, |ui| {
                visual_token_budget(ui, &mut settings.model.max_visual_tokens)
            });
        });
}

/// Quantisation, its scope and the compute dtype (used when "best for this device" is off).
fn quantisation(ui: &mut egui::Ui, settings: &mut UiSettings) {
    for q in [Quant::None, Quant::Nf4, Quant::Q4k] {
        ui.selectable_value(&mut settings.model.quant, q, q.name());
    }
    ui.separator();
    // The scope means something only when quantising.
    let quantised = settings.model.quant != Quant::None;
    ui.add_enabled_ui(quantised, |ui| {
        for (s, label, hint) in [
            (
                QuantScope::AllLinear,
                "all layers",
                "language model and vision tower",
            ),
            (
                QuantScope::LanguageModelOnly,
                "LM only",
                "the vision tower stays dense",
            ),
        ] {
            ui.selectable_value(&mut settings.model.quant_scope, s, label)
                .on_hover_text(hint);
        }
    });
    ui.separator();
    for d in [DType::F32, DType::Bf16, DType::F16] {
        ui.selectable_value(&mut settings.model.dtype, d, d.name());
    }
    ui.separator();
    // FP8 applies to NF4 weights only.
    ui.add_enabled_ui(settings.model.quant == Quant::Nf4, |ui| {
        for (c, label, hint) in [
            (
                Compute::Dtype,
                "dtype GEMMs",
                "the NF4 layers multiply in the compute dtype",
            ),
            (
                Compute::Fp8,
                "fp8 GEMMs",
                "W4A8 on FP8 tensor cores (Ada, Hopper and later): faster, a little less exact",
            ),
        ] {
            ui.selectable_value(&mut settings.model.compute, c, label)
                .on_hover_text(hint);
        }
    });
}

/// The visual-token budget: the checkpoint's own unless the user sets a number.
fn visual_token_budget(ui: &mut egui::Ui, budget: &mut Option<usize>) {
    let mut own = budget.is_none();
    ui.checkbox(&mut own, "checkpoint's visual tokens")
        .on_hover_text("The page resolution the model was saved with (its preprocessor config)");
    if own {
        *budget = None;
    } else {
        let mut n = budget.unwrap_or(768);
        ui.add(
            egui::DragValue::new(&mut n)
                .range(64..=4096)
                .prefix("max visual tokens "),
        );
        *budget = Some(n);
    }
}

/// e.g. "bf16 compute, NF4 weights" or "f32 compute, unquantised weights".
/// With FP8 GEMMs (NF4 only): "bf16 compute with fp8 GEMMs, NF4 weights".
fn precision_text(dtype: DType, quant: Quant, scope: QuantScope, compute: Compute) -> String {
    let weights = match (quant, scope) {
        (Quant::None, _) => "unquantised weights".to_string(),
        (q, QuantScope::AllLinear) => format!("{} weights", q.name().to_uppercase()),
        (q, QuantScope::LanguageModelOnly) => {
            format!("{} weights (LM only)", q.name().to_uppercase())
        }
    };
    let gemms = match (quant, compute) {
        (Quant::Nf4, Compute::Fp8) => " with fp8 GEMMs",
        _ => "",
    };
    format!("{} compute{gemms}, {weights}", dtype.name())
}

/// What Start will use, in one line: e.g. "cuda:0 · bf16 compute, NF4 weights · batch 4 ·
/// 8 workers · async transfer" (`cuda`: whether `auto` finds a GPU).
pub fn summary(s: &IngestSettings, cuda: bool) -> String {
    let device = match &s.devices {
        Some(set) => set.to_string(),
        None => match s.model.device {
            DeviceChoice::Auto if cuda => "cuda:0".to_string(),
            DeviceChoice::Auto => "cpu".to_string(),
            d => d.to_string(),
        },
    };
    let m = &s.model;
    let mut parts = vec![
        device,
        precision_text(
            m.dtype,
            m.quant,
            m.effective_quant_scope(),
            m.compute_in_effect(),
        ),
        format!("batch {}", s.live.batch_size),
        format!("{} workers", s.loader.workers),
        format!("{} transfer", s.live.transfer.name()),
    ];
    if let Some(n) = m.max_visual_tokens {
        parts.push(format!("max {n} visual tokens"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_engine::{DeviceSet, TransferMode};

    fn settings() -> IngestSettings {
        let mut s = IngestSettings::with_defaults();
        s.model.dtype = DType::Bf16;
        s.model.quant = Quant::Nf4;
        s.live.batch_size = 4;
        s.loader.workers = 8;
        s.live.transfer = TransferMode::Async;
        s
    }

    #[test]
    fn the_summary_names_device_precision_batch_workers_and_transfer() {
        let s = settings();
        assert_eq!(
            summary(&s, true),
            "cuda:0 · bf16 compute, NF4 weights · batch 4 · 8 workers · async transfer"
        );
        // `auto` without CUDA is the CPU.
        assert!(summary(&s, false).starts_with("cpu · "));
        let mut cpu = s.clone();
        cpu.model.device = DeviceChoice::Cpu;
        cpu.model.quant = Quant::None;
        cpu.model.dtype = DType::F32;
        cpu.live.transfer = TransferMode::Pageable;
        cpu.model.max_visual_tokens = Some(512);
        assert_eq!(
            summary(&cpu, true),
            "cpu · f32 compute, unquantised weights · batch 4 · 8 workers · pageable transfer \
             · max 512 visual tokens"
        );
        let mut two = s.clone();
        two.set_devices(&"cuda:0,2".parse::<DeviceSet>().unwrap());
        two.model.quant_scope = QuantScope::LanguageModelOnly;
        assert!(
            summary(&two, true).starts_with("cuda:0,cuda:2 · bf16 compute, NF4 weights (LM only)"),
            "{}",
            summary(&two, true)
        );
    }
}
