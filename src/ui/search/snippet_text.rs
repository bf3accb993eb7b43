//! A result's text snippet as egui text: the query's terms in the strong colour on the selection
//! background, so they stand out in either theme.

use egui::text::{LayoutJob, TextFormat};
use pagesight_index::Snippet;

/// The snippet laid out in `font`, at most `max_rows` rows (the rest elided) once wrapped.
pub fn job(
    snippet: &Snippet,
    visuals: &egui::Visuals,
    font: egui::FontId,
    max_rows: usize,
) -> LayoutJob {
    let mut job = LayoutJob::default();
    job.wrap.max_rows = max_rows;
    for (piece, term) in snippet.pieces() {
        let format = if term {
            TextFormat {
                font_id: font.clone(),
                color: visuals.strong_text_color(),
                background: visuals.selection.bg_fill,
                ..Default::default()
            }
        } else {
            TextFormat {
                font_id: font.clone(),
                color: visuals.text_color(),
                ..Default::default()
            }
        };
        job.append(piece, 0.0, format);
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_get_the_highlight_and_nothing_else_does() {
        let text = "…the attention heads…";
        let at = text.find("attention").unwrap();
        let term = at..at + "attention".len();
        let s = Snippet {
            text: text.into(),
            highlighted: vec![term],
        };
        let v = egui::Visuals::dark();
        let j = job(&s, &v, egui::FontId::proportional(12.0), 3);
        assert_eq!(j.text, s.text);
        let marked: Vec<&str> = j
            .sections
            .iter()
            .filter(|sec| sec.format.background == v.selection.bg_fill)
            .map(|sec| &j.text[sec.byte_range.start.0..sec.byte_range.end.0])
            .collect();
        assert_eq!(marked, ["attention"]);
        assert_eq!(j.wrap.max_rows, 3);
    }
}
