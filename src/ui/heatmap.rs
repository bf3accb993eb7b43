//! The similarity heatmap overlay: per-patch scores → a small RGBA texture (low = transparent,
//! high = opaque yellow-red) stretched over the page image with linear filtering.

use pagesight_engine::event::Heatmap;

/// RGBA (unmultiplied) for one normalised score in 0..=1.
fn colour(v: f32) -> [u8; 4] {
    let v = v.clamp(0.0, 1.0);
    // dark red → red → yellow, alpha rising with the score so weak patches leave the page visible.
    let r = (80.0 + 175.0 * (v * 2.0).min(1.0)) as u8;
    let g = (255.0 * (v * 2.0 - 1.0).max(0.0)) as u8;
    let a = (255.0 * v.powf(0.8)) as u8;
    [r, g, 0, a]
}

/// The overlay image, or why the heatmap cannot be drawn.
pub fn image(h: &Heatmap) -> Result<egui::ColorImage, String> {
    let (w, hh) = (h.grid_w as usize, h.grid_h as usize);
    if w == 0 || hh == 0 || h.values.len() != w * hh {
        return Err(format!(
            "heatmap has {} values for a {}×{} grid",
            h.values.len(),
            h.grid_w,
            h.grid_h
        ));
    }
    let finite = h.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut rgba = Vec::with_capacity(w * hh * 4);
    for &v in &h.values {
        let n = if v.is_finite() && hi.is_finite() {
            (v - lo) / span
        } else {
            0.0
        };
        rgba.extend_from_slice(&colour(n));
    }
    Ok(egui::ColorImage::from_rgba_unmultiplied([w, hh], &rgba))
}

/// Paints `overlay` over `rect` at `opacity`.
pub fn paint(
    painter: &egui::Painter,
    rect: egui::Rect,
    overlay: &egui::TextureHandle,
    opacity: f32,
) {
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    let tint = egui::Color32::from_white_alpha((opacity.clamp(0.0, 1.0) * 255.0) as u8);
    painter.image(overlay.id(), rect, uv, tint);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn strongest_patch_is_most_opaque() {
        let h = Heatmap {
            grid_h: 2,
            grid_w: 2,
            values: vec![0.1, 0.9, 0.5, f32::NAN],
        };
        let img = image(&h).unwrap();
        assert_eq!(img.size, [2, 2]);
        let alpha: Vec<u8> = img.pixels.iter().map(|p| p.a()).collect();
        assert_eq!(alpha[0], 0);
        assert_eq!(alpha[3], 0, "NaN draws nothing");
        assert!(alpha[1] > alpha[2] && alpha[2] > 0);
        let bad = Heatmap {
            grid_h: 3,
            grid_w: 2,
            values: vec![0.0; 4],
        };
        assert!(image(&bad).unwrap_err().contains("4 values for a 2×3 grid"));
    }
}
