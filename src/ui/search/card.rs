//! A result's card in the grid, and the buttons and menu that act on one result.

use super::{snippet_text, SearchAction, CARD_WIDTH, GRID_THUMB_SIDE};
use crate::export::results;
use crate::ui::format;
use crate::ui::thumbnails::{ThumbKey, ThumbState, Thumbnails};
use pagesight_engine::event::SearchHit;

/// Lines of snippet on a card (the large view shows more).
const SNIPPET_ROWS: usize = 4;

/// What can be done with a result, beyond opening it: the large view's buttons.
pub(super) fn hit_buttons(ui: &mut egui::Ui, hit: &SearchHit, actions: &mut Vec<SearchAction>) {
    if ui.button("Open PDF at this page").clicked() {
        actions.push(SearchAction::OpenPdf(hit.file.clone(), hit.page));
    }
    if ui.button("Reveal in file manager").clicked() {
        actions.push(SearchAction::Reveal(hit.file.clone()));
    }
    if ui
        .button("Copy reference")
        .on_hover_text(results::reference(hit))
        .clicked()
    {
        actions.push(SearchAction::CopyReference(results::reference(hit)));
    }
}

/// A card's context menu: the same as the large view's buttons.
pub(super) fn hit_menu(ui: &mut egui::Ui, hit: &SearchHit, actions: &mut Vec<SearchAction>) {
    let before = actions.len();
    hit_buttons(ui, hit, actions);
    if actions.len() > before {
        ui.close();
    }
}

pub(super) fn grid_key(hit: &SearchHit) -> ThumbKey {
    ThumbKey {
        file: hit.file.clone(),
        page: hit.page,
        max_side: GRID_THUMB_SIDE,
    }
}

/// One result card; the whole card is the click target and carries an accessible label.
pub(super) fn card(
    ui: &mut egui::Ui,
    // The hit's place in the result list (ranks restart in each model's group).
    position: usize,
    hit: &SearchHit,
    // Shown when the results come from several corpora.
    corpus: Option<&str>,
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
            if let Some(c) = corpus {
                ui.weak(format!("in {c}"));
            }
            ui.add(
                egui::Label::new(format!(
                    "{} · p. {}",
                    format::file_name(&hit.file),
                    hit.page
                ))
                .truncate(),
            );
            if let Some(s) = &hit.snippet {
                let font = egui::TextStyle::Small.resolve(ui.style());
                let job = snippet_text::job(s, ui.visuals(), font, SNIPPET_ROWS);
                ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                    ui.add(egui::Label::new(job).wrap());
                });
            }
        });
    });
    let resp = ui.interact(
        inner.response.rect,
        egui::Id::unique(("result-card", position)),
        egui::Sense::click(),
    );
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
    resp
}
