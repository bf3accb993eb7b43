//! The Search view: query box (Enter searches), mode, a grid of page thumbnails with score, file and
//! page; arrows move the selection, Enter or a click opens the large view with the similarity
//! heatmap, Esc closes it.

use super::format;
use super::heatmap;
use super::settings::UiSettings;
use super::thumbnails::{ThumbKey, ThumbState, Thumbnails};
use pagesight_engine::event::SearchHit;
use pagesight_engine::SearchMode;
use std::collections::HashMap;

pub const GRID_THUMB_SIDE: u32 = 256;
pub const LARGE_THUMB_SIDE: u32 = 1280;
const CARD_WIDTH: f32 = 190.0;

pub struct ResultSet {
    pub id: u64,
    pub query: String,
    pub hits: Vec<SearchHit>,
    pub elapsed_ms: f64,
    pub note: Option<String>,
    /// What ranked the pages (GPU or CPU, which kernel).
    pub scorer: String,
    /// Where `elapsed_ms` went.
    pub timings: pagesight_engine::event::SearchTimings,
}

pub enum SearchAction {
    Search(String),
    Thumbnail(ThumbKey),
    OpenPdf(std::path::PathBuf, u32),
}

#[derive(Default)]
pub struct SearchView {
    pub query: String,
    /// Id of the search in flight.
    pub pending: Option<u64>,
    pub results: Option<ResultSet>,
    pub selected: Option<usize>,
    pub large_open: bool,
    pub error: Option<String>,
    /// Overlay textures per hit rank of the current results.
    overlays: HashMap<usize, Result<egui::TextureHandle, String>>,
    columns: usize,
}

impl SearchView {
    pub fn on_results(&mut self, set: ResultSet) {
        if self.pending != Some(set.id) {
            return; // an answer to an older question
        }
        self.pending = None;
        self.error = None;
        self.selected = if set.hits.is_empty() { None } else { Some(0) };
        self.large_open = false;
        self.overlays.clear();
        self.results = Some(set);
    }

    /// An engine error; returns whether it answered our search.
    pub fn on_error(&mut self, request_id: u64, message: &str) -> bool {
        if self.pending == Some(request_id) {
            self.pending = None;
            self.error = Some(message.to_owned());
            return true;
        }
        false
    }

    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        settings: &mut UiSettings,
        thumbs: &mut Thumbnails,
        index_ready: Result<(), &str>,
    ) -> Vec<SearchAction> {
        let mut actions = Vec::new();
        let mut query_focused = false;
        ui.horizontal(|ui| {
            let label = ui.label("Query");
            let edit = ui
                .add_enabled(
                    index_ready.is_ok(),
                    egui::TextEdit::singleline(&mut self.query)
                        .hint_text("what are you looking for? (Enter to search)")
                        .desired_width(480.0),
                )
                .labelled_by(label.id);
            query_focused = edit.has_focus();
            let submitted = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let clicked = ui
                .add_enabled(index_ready.is_ok(), egui::Button::new("Search"))
                .clicked();
            if (submitted || clicked) && !self.query.trim().is_empty() {
                actions.push(SearchAction::Search(self.query.trim().to_owned()));
            }
            for m in SearchMode::ALL {
                ui.selectable_value(&mut settings.search_mode, m, m.name());
            }
            ui.checkbox(&mut settings.fast_search, "fast")
                .on_hover_text(
                    "Visual ranking through a sign-bit prefilter over every page, then exact MaxSim on \
                     the best candidates (max(400, 1 % of the pages)): several times faster on big \
                     indexes, recall@10 1.000 in our benchmarks at 10k and 100k pages",
                );
            ui.add(
                egui::DragValue::new(&mut settings.top_k)
                    .range(1..=100)
                    .prefix("top "),
            );
            ui.add(
                egui::TextEdit::singleline(&mut settings.search_backend)
                    .hint_text("local")
                    .desired_width(200.0),
            )
            .on_hover_text(
                "Where visual ranking runs: empty for the local index, or a Qdrant collection the \
                 index was exported to (pagesight export qdrant), qdrant://host:port/collection",
            );
        });
        if let Err(why) = index_ready {
            ui.label(egui::RichText::new(why).color(ui.visuals().warn_fg_color));
        }
        if self.pending.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Searching…");
            });
        }
        if let Some(e) = &self.error {
            ui.label(
                egui::RichText::new(format!("Search failed: {e}"))
                    .color(ui.visuals().error_fg_color),
            );
        }
        let Some(results) = &self.results else {
            if index_ready.is_ok() && self.pending.is_none() && self.error.is_none() {
                ui.weak("Type what you are looking for and press Enter: the best-matching pages appear here.");
            }
            return actions;
        };
        ui.label(format!(
            "{} results for “{}” in {:.0} ms",
            results.hits.len(),
            results.query,
            results.elapsed_ms
        ))
        .on_hover_text(time_by_step(&results.timings));
        if !results.scorer.is_empty() {
            ui.weak(format!("ranked by: {}", results.scorer));
        }
        if let Some(note) = &results.note {
            ui.label(
                egui::RichText::new(note)
                    .italics()
                    .color(ui.visuals().warn_fg_color),
            );
        }
        ui.separator();

        if !query_focused && !self.large_open {
            self.handle_grid_keys(ui);
        }
        self.columns = ((ui.available_width() / (CARD_WIDTH + 8.0)).floor() as usize).max(1);
        let mut clicked = None;
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let Some(results) = &self.results else { return };
                egui::Grid::new("results-grid")
                    .spacing([8.0, 8.0])
                    .show(ui, |ui| {
                        for (i, hit) in results.hits.iter().enumerate() {
                            let key = grid_key(hit);
                            if matches!(thumbs.get(&key), ThumbState::Missing) {
                                actions.push(SearchAction::Thumbnail(key.clone()));
                            }
                            if card(ui, hit, thumbs, &key, self.selected == Some(i)).clicked() {
                                clicked = Some(i);
                            }
                            if (i + 1) % self.columns == 0 {
                                ui.end_row();
                            }
                        }
                    });
            });
        if let Some(i) = clicked {
            self.selected = Some(i);
            self.large_open = true;
        }
        if self.large_open {
            self.show_large(ui.ctx(), settings, thumbs, &mut actions);
        }
        actions
    }

    fn handle_grid_keys(&mut self, ui: &egui::Ui) {
        let n = self.results.as_ref().map_or(0, |r| r.hits.len());
        if n == 0 {
            return;
        }
        let cols = self.columns.max(1) as isize;
        let step = ui.input(|i| {
            if i.key_pressed(egui::Key::ArrowRight) {
                1
            } else if i.key_pressed(egui::Key::ArrowLeft) {
                -1
            } else if i.key_pressed(egui::Key::ArrowDown) {
                cols
            } else if i.key_pressed(egui::Key::ArrowUp) {
                -cols
            } else {
                0
            }
        });
        if step != 0 {
            let cur = self.selected.unwrap_or(0) as isize;
            self.selected = Some((cur + step).clamp(0, n as isize - 1) as usize);
        }
        if self.selected.is_some() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
            self.large_open = true;
        }
    }

    fn show_large(
        &mut self,
        ctx: &egui::Context,
        settings: &mut UiSettings,
        thumbs: &mut Thumbnails,
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
        let n = results.hits.len();
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
                    .add_enabled(sel > 0, egui::Button::new("Previous"))
                    .clicked()
                {
                    step = -1;
                }
                if ui
                    .add_enabled(sel + 1 < n, egui::Button::new("Next"))
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
                if ui.button("Open PDF at this page").clicked() {
                    actions.push(SearchAction::OpenPdf(hit.file.clone(), hit.page));
                }
                if ui.button("Close").clicked() {
                    ui.close();
                }
            });
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
            self.selected = Some((sel as isize + step).clamp(0, n as isize - 1) as usize);
        }
    }
}

fn grid_key(hit: &SearchHit) -> ThumbKey {
    ThumbKey {
        file: hit.file.clone(),
        page: hit.page,
        max_side: GRID_THUMB_SIDE,
    }
}

/// One result card; the whole card is the click target and carries an accessible label.
fn card(
    ui: &mut egui::Ui,
    hit: &SearchHit,
    thumbs: &mut Thumbnails,
    key: &ThumbKey,
    selected: bool,
) -> egui::Response {
    let label = format!(
        "Result {}: {} page {} (score {:.3})",
        hit.rank,
        format::file_name(&hit.file),
        hit.page,
        hit.score
    );
    let frame = egui::Frame::group(ui.style()).stroke(if selected {
        egui::Stroke::new(2.0, ui.visuals().selection.stroke.color)
    } else {
        ui.visuals().widgets.noninteractive.bg_stroke
    });
    let inner = frame.show(ui, |ui| {
        ui.set_width(CARD_WIDTH);
        ui.vertical_centered(|ui| {
            let thumb_h = 220.0;
            match thumbs.get(key) {
                ThumbState::Ready(t) => {
                    let size = t.size_vec2();
                    let scale = (thumb_h / size.y).min(CARD_WIDTH / size.x);
                    ui.add(egui::Image::new(t).fit_to_exact_size(size * scale));
                }
                ThumbState::Failed(why) => {
                    ui.add_sized(
                        [CARD_WIDTH, thumb_h],
                        egui::Label::new(format!("no preview: {why}")).wrap(),
                    );
                }
                ThumbState::Missing | ThumbState::Loading => {
                    ui.add_sized([CARD_WIDTH, thumb_h], egui::Spinner::new());
                }
            }
            ui.label(egui::RichText::new(format!("#{}  {:.3}", hit.rank, hit.score)).strong());
            ui.add(
                egui::Label::new(format!(
                    "{} · p. {}",
                    format::file_name(&hit.file),
                    hit.page
                ))
                .truncate(),
            );
        });
    });
    let resp = ui.interact(
        inner.response.rect,
        egui::Id::unique(("result-card", hit.rank)),
        egui::Sense::click(),
    );
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
    resp
}

/// "query 8.1 ms · scoring 3.0 ms · …": the steps that took time, for the results line's tooltip.
pub fn time_by_step(t: &pagesight_engine::event::SearchTimings) -> String {
    let steps = [
        ("opening the index", t.open_ms),
        ("loading the query model", t.model_load_ms),
        ("embedding the query", t.embed_ms),
        ("GPU page tiles", t.tiles_ms),
        ("scoring", t.score_ms),
        ("heatmaps", t.heatmap_ms),
    ];
    let parts: Vec<String> = steps
        .iter()
        .filter(|(_, ms)| *ms >= 0.05)
        .map(|(what, ms)| format!("{what} {ms:.1} ms"))
        .collect();
    if parts.is_empty() {
        "no step took measurable time".into()
    } else {
        parts.join(" · ")
    }
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn the_tooltip_names_the_steps_that_took_time() {
        let t = pagesight_engine::event::SearchTimings {
            embed_ms: 8.14,
            score_ms: 3.0,
            model_load_ms: 0.001,
            ..Default::default()
        };
        assert_eq!(
            time_by_step(&t),
            "embedding the query 8.1 ms · scoring 3.0 ms"
        );
        assert_eq!(
            time_by_step(&Default::default()),
            "no step took measurable time"
        );
    }
}
