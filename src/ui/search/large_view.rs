//! The large view: one result's page enlarged in a modal, with its similarity heatmap over it.

use super::card::{grid_key, hit_buttons};
use super::{snippet_text, step_within, SearchAction, SearchView, LARGE_THUMB_SIDE};
use crate::ui::format;
use crate::ui::heatmap;
use crate::ui::settings::UiSettings;
use crate::ui::thumbnails::{ThumbKey, ThumbState, Thumbnails};

impl SearchView {
    pub(super) fn show_large(
        &mut self,
        ctx: &egui::Context,
        settings: &mut UiSettings,
        thumbs: &mut Thumbnails,
        visible: &[usize],
        actions: &mut Vec<SearchAction>,
    ) {
        let (Some(results), Some(sel)) = (&self.results, self.selected) else {
            self.large_open = false;
            return;
        };
        let Some(hit) = results.hits.get(sel) else {
            self.large_open = false;
            return;
        };
        let at = visible.iter().position(|&i| i == sel).unwrap_or(0);
        let n = visible.len();
        let large_key = ThumbKey {
            file: hit.file.clone(),
            page: hit.page,
            max_side: LARGE_THUMB_SIDE,
        };
        if matches!(thumbs.get(&large_key), ThumbState::Missing) {
            actions.push(SearchAction::Thumbnail(large_key.clone()));
        }
        let overlay = hit.heatmap.as_ref().map(|h| {
            self.overlays
                .entry(sel)
                .or_insert_with(|| {
                    heatmap::image(h).map(|img| {
                        ctx.load_texture(
                            format!("heatmap#{sel}"),
                            img,
                            egui::TextureOptions::LINEAR,
                        )
                    })
                })
                .clone()
        });
        let screen = ctx.content_rect();
        let mut step = 0isize;
        let modal = egui::Modal::new(egui::Id::unique("large-view")).show(ctx, |ui| {
            ui.set_max_width(screen.width() * 0.85);
            ui.horizontal(|ui| {
                ui.heading(format!(
                    "#{} · {} · page {}",
                    hit.rank,
                    format::file_name(&hit.file),
                    hit.page
                ));
                ui.label(format!("score {:.3}", hit.score));
            });
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(at > 0, egui::Button::new("Previous"))
                    .clicked()
                {
                    step = -1;
                }
                if ui
                    .add_enabled(at + 1 < n, egui::Button::new("Next"))
                    .clicked()
                {
                    step = 1;
                }
                ui.add_enabled(
                    overlay.is_some(),
                    egui::Checkbox::new(&mut settings.show_heatmap, "Heatmap"),
                );
                ui.add_enabled(
                    overlay.is_some() && settings.show_heatmap,
                    egui::Slider::new(&mut settings.heatmap_opacity, 0.0..=1.0).text("opacity"),
                );
                hit_buttons(ui, hit, actions);
                if ui.button("Close").clicked() {
                    ui.close();
                }
            });
            if let Some(s) = &hit.snippet {
                let font = egui::TextStyle::Body.resolve(ui.style());
                ui.add(egui::Label::new(snippet_text::job(s, ui.visuals(), font, 4)).wrap());
            }
            match &overlay {
                None => ui
                    .label("No heatmap for this result (the engine sends maps for visual search)."),
                Some(Err(why)) => {
                    ui.label(egui::RichText::new(why).color(ui.visuals().error_fg_color))
                }
                Some(Ok(_)) => ui.label(format!(
                    "Heatmap: per-patch similarity to “{}”",
                    results.query
                )),
            };
            let max_h = screen.height() * 0.7;
            let small = grid_key(hit);
            let texture = match thumbs.get(&large_key) {
                ThumbState::Ready(t) => Some(t.clone()),
                _ => match thumbs.get(&small) {
                    ThumbState::Ready(t) => Some(t.clone()),
                    _ => None,
                },
            };
            let size = texture
                .as_ref()
                .map_or(egui::vec2(0.7, 1.0), |t| t.size_vec2());
            let shown = size * (max_h / size.y).min(screen.width() * 0.8 / size.x);
            // Centred under the row of controls, which is usually wider than a portrait page
            // (a centred layout would stretch the window to its maximum width instead).
            let indent = ((ui.min_rect().width() - shown.x) / 2.0).max(0.0);
            ui.horizontal(|ui| {
                ui.add_space(indent);
                match &texture {
                    Some(t) => {
                        let page = format!("{} page {}", format::file_name(&hit.file), hit.page);
                        let resp =
                            ui.add(egui::Image::new(t).fit_to_exact_size(shown).alt_text(page));
                        if let (true, Some(Ok(ov))) = (settings.show_heatmap, &overlay) {
                            heatmap::paint(ui.painter(), resp.rect, ov, settings.heatmap_opacity);
                        }
                    }
                    None => {
                        ui.add_sized(shown, egui::Spinner::new());
                    }
                }
            });
            if !ui.ctx().memory(|m| m.focused().is_some()) {
                ui.input(|i| {
                    if i.key_pressed(egui::Key::ArrowRight) || i.key_pressed(egui::Key::ArrowDown) {
                        step = 1;
                    } else if i.key_pressed(egui::Key::ArrowLeft)
                        || i.key_pressed(egui::Key::ArrowUp)
                    {
                        step = -1;
                    }
                });
            }
        });
        if modal.should_close() {
            self.large_open = false;
        }
        if step != 0 {
            self.selected = Some(step_within(visible, Some(sel), step));
        }
    }
}
