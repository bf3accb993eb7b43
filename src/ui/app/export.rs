//! Where exports go (`<export dir>/<what>-<unix seconds>.<ext>`) and the plot export: a crop of
//! the window's screenshot written as PNG.

use super::*;

impl PagesightApp {
    fn export_dir(&self) -> PathBuf {
        self.options
            .export_dir
            .clone()
            .unwrap_or_else(|| pagesight_common::paths::data_dir().join("exports"))
    }

    pub(super) fn export_name(&self, ext: &str) -> PathBuf {
        self.export_file("runs", ext)
    }

    /// `<export dir>/<what>-<unix seconds>.<ext>`.
    pub(super) fn export_file(&self, what: &str, ext: &str) -> PathBuf {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.export_dir().join(format!("{what}-{secs}.{ext}"))
    }
}

/// Crops the screenshot to `rect` (points) and writes it as PNG.
pub(super) fn save_png_crop(
    image: &egui::ColorImage,
    rect: egui::Rect,
    ppp: f32,
    path: &Path,
) -> Result<(), String> {
    let [w, h] = image.size;
    let x0 = ((rect.min.x * ppp).floor().max(0.0) as usize).min(w);
    let y0 = ((rect.min.y * ppp).floor().max(0.0) as usize).min(h);
    let x1 = ((rect.max.x * ppp).ceil().max(0.0) as usize).min(w);
    let y1 = ((rect.max.y * ppp).ceil().max(0.0) as usize).min(h);
    if x1 <= x0 || y1 <= y0 {
        return Err("the plot is not on screen; scroll it into view and export again".into());
    }
    let mut out = image::RgbaImage::new((x1 - x0) as u32, (y1 - y0) as u32);
    for y in y0..y1 {
        for x in x0..x1 {
            let c = image.pixels[y * w + x].to_srgba_unmultiplied();
            out.put_pixel((x - x0) as u32, (y - y0) as u32, image::Rgba(c));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    }
    let mut png = Vec::new();
    out.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("could not encode the PNG: {e}"))?;
    pagesight_common::fs::write_atomic(path, &png)
        .map_err(|e| format!("could not write the PNG: {e}"))
}
