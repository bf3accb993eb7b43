//! The model choice of the Corpus form: the published ColQwen2.5 (the default), another
//! checkpoint (a folder or a hub id), or — under "developer" — a random model, labelled as
//! meaningless.

use pagesight_engine::ModelSettings;
use pagesight_model::hub::{DEFAULT_ADAPTER, DEFAULT_MODEL};

/// What the label of the developer's random models says.
pub const RANDOM_LABEL: &str = "random weights — results are meaningless, for testing";

/// The real model's name in the model choice.
pub const REAL_MODEL_LABEL: &str = "ColQwen2.5 (vidore/colqwen2.5-v0.2)";

/// The model choice: the published ColQwen2.5 (the default), another checkpoint (a folder or a
/// hub id), or — under "developer" — a random model, labelled as meaningless.
pub fn show(ui: &mut egui::Ui, model: &mut ModelSettings, label: egui::Id) {
    let real = is_real_model(model);
    let random = model.model.starts_with("random:");
    let selected = if real {
        REAL_MODEL_LABEL.to_string()
    } else if random {
        format!("developer: {} ({RANDOM_LABEL})", model.model)
    } else {
        "Other checkpoint".to_string()
    };
    ui.vertical(|ui| {
        egui::ComboBox::from_id_salt("model-choice")
            .selected_text(selected)
            .width(420.0)
            .show_ui(ui, |ui| {
                if ui.selectable_label(real, REAL_MODEL_LABEL).clicked() {
                    set_real_model(model);
                }
                if ui
                    .selectable_label(!real && !random, "Other checkpoint (folder or hub id)")
                    .clicked()
                    && (real || random)
                {
                    model.model.clear();
                    model.adapter = None;
                }
                ui.separator();
                ui.label(egui::RichText::new("developer").weak());
                for r in ["random:tiny", "random:3b"] {
                    if ui
                        .selectable_label(
                            model.model == r,
                            format!("developer: {r} ({RANDOM_LABEL})"),
                        )
                        .clicked()
                    {
                        model.model = r.into();
                        model.adapter = None;
                    }
                }
            })
            .response
            .labelled_by(label);
        if !real && !random {
            ui.add(
                egui::TextEdit::singleline(&mut model.model)
                    .hint_text("snapshot folder or hub id (owner/name)")
                    .desired_width(420.0),
            )
            .labelled_by(label);
        }
        if random {
            ui.label(egui::RichText::new(RANDOM_LABEL).color(ui.visuals().warn_fg_color));
        }
    });
}

/// The published model: the v0.2 adapter on its base.
pub fn is_real_model(m: &ModelSettings) -> bool {
    m.model == DEFAULT_MODEL && m.adapter.as_deref() == Some(std::path::Path::new(DEFAULT_ADAPTER))
}

pub fn set_real_model(m: &mut ModelSettings) {
    m.model = DEFAULT_MODEL.into();
    m.adapter = Some(DEFAULT_ADAPTER.into());
}
