//! PDFium through pdfium-render: open a document, count pages, render one page to packed RGB on
//! white, and read its text layer. PDFium is not thread-safe, so the loader calls this from
//! render worker processes (see `worker.rs`); one process binds the library once.

use anyhow::{anyhow, bail, Context, Result};
use pdfium_render::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The process's PDFium, bound on first use from [`crate::paths::find_pdfium`].
pub fn pdfium() -> Result<&'static Pdfium> {
    static PDFIUM: OnceLock<Result<Pdfium, String>> = OnceLock::new();
    let bound = PDFIUM.get_or_init(|| {
        let lib = crate::paths::find_pdfium().map_err(|e| format!("{e:#}"))?;
        let bindings = Pdfium::bind_to_library(&lib).map_err(|e| {
            format!(
                "cannot load {} ({e}); it must be PDFium build 8149 (pypdfium2 5.15.2)",
                lib.display()
            )
        })?;
        Ok(Pdfium::new(bindings))
    });
    bound.as_ref().map_err(|e| anyhow!("{e}"))
}

/// A page rendered to packed 8-bit RGB, `height` rows of `width` pixels.
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Pixel size of a page box of `w_pt × h_pt` points at `dpi`, scaled down (aspect kept) so that
/// it holds at most `max_pixels` pixels; at least 1×1.
pub fn render_size(w_pt: f32, h_pt: f32, dpi: f32, max_pixels: u64) -> Result<(u32, u32)> {
    if !(w_pt.is_finite() && h_pt.is_finite()) || w_pt <= 0.0 || h_pt <= 0.0 {
        bail!("page has an empty or invalid size ({w_pt}×{h_pt} pt)");
    }
    if !(dpi.is_finite() && dpi > 0.0) {
        bail!("invalid render resolution {dpi} dpi");
    }
    let mut scale = dpi as f64 / 72.0;
    let (w, h) = (w_pt as f64, h_pt as f64);
    let area = w * scale * h * scale;
    let capped = area > max_pixels as f64;
    if capped {
        scale *= (max_pixels as f64 / area).sqrt();
    }
    // Rounding down when capped keeps the product under the cap.
    let px = |v: f64| {
        let x = v * scale;
        (if capped { x.floor() } else { x.round() }).clamp(1.0, i32::MAX as f64) as u32
    };
    Ok((px(w), px(h)))
}

/// One open document at a time (a worker renders the pages of one file before the next).
pub struct PdfRenderer {
    pdfium: &'static Pdfium,
    open: Option<(PathBuf, PdfDocument<'static>)>,
}

impl PdfRenderer {
    pub fn new() -> Result<Self> {
        Ok(PdfRenderer {
            pdfium: pdfium()?,
            open: None,
        })
    }

    fn document(&mut self, path: &Path) -> Result<&PdfDocument<'static>> {
        if self.open.as_ref().map(|(p, _)| p.as_path()) != Some(path) {
            self.open = None;
            let doc = open_document(self.pdfium, path)?;
            self.open = Some((path.to_path_buf(), doc));
        }
        Ok(&self.open.as_ref().expect("document just opened").1)
    }

    /// Number of pages of the PDF at `path` (opening it if needed).
    pub fn page_count(&mut self, path: &Path) -> Result<u32> {
        Ok(self.document(path)?.pages().len().max(0) as u32)
    }

    /// Size of page `index` (0-based) in points.
    pub fn page_size_pt(&mut self, path: &Path, index: u32) -> Result<(f32, f32)> {
        let doc = self.document(path)?;
        let page = doc
            .pages()
            .get(index as PdfPageIndex)
            .map_err(|e| anyhow!("page {} cannot be loaded: {e}", index + 1))?;
        Ok((page.width().value, page.height().value))
    }

    /// Renders page `index` (0-based) at `dpi`, capped at `max_pixels`, onto white; returns the
    /// pixels and the page's text layer.
    pub fn render(
        &mut self,
        path: &Path,
        index: u32,
        dpi: f32,
        max_pixels: u64,
    ) -> Result<(RgbImage, String)> {
        let doc = self.document(path)?;
        let count = doc.pages().len().max(0) as u32;
        if index >= count {
            bail!("page {} does not exist (the PDF has {count})", index + 1);
        }
        let page = doc
            .pages()
            .get(index as PdfPageIndex)
            .map_err(|e| anyhow!("cannot load the page: {e}"))?;
        let (w, h) = render_size(page.width().value, page.height().value, dpi, max_pixels)?;
        let config = PdfRenderConfig::new()
            .set_fixed_size(w as Pixels, h as Pixels)
            .set_format(PdfBitmapFormat::BGRA)
            .set_reverse_byte_order(false)
            .set_clear_color(PdfColor::WHITE)
            .clear_before_rendering(true);
        let bitmap = page
            .render_with_config(&config)
            .map_err(|e| anyhow!("rendering failed: {e}"))?;
        let raw = bitmap.as_raw_bytes();
        let (bw, bh) = (
            bitmap.width().max(0) as usize,
            bitmap.height().max(0) as usize,
        );
        if bw == 0 || bh == 0 || raw.len() < bw * bh * 4 {
            bail!("rendering produced an empty bitmap ({bw}×{bh})");
        }
        let stride = raw.len() / bh;
        let mut rgb = Vec::with_capacity(bw * bh * 3);
        for row in raw.chunks_exact(stride).take(bh) {
            for px in row[..bw * 4].chunks_exact(4) {
                // BGRA; the page was drawn onto opaque white, so alpha carries nothing.
                rgb.extend_from_slice(&[px[2], px[1], px[0]]);
            }
        }
        let text = page.text().map(|t| t.all()).unwrap_or_default();
        Ok((
            RgbImage {
                width: bw as u32,
                height: bh as u32,
                rgb,
            },
            text,
        ))
    }
}

fn open_document(pdfium: &'static Pdfium, path: &Path) -> Result<PdfDocument<'static>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() == 0 {
        bail!("the file is empty");
    }
    if !starts_like_pdf(path)? {
        bail!("not a PDF (the file does not start with %PDF-)");
    }
    pdfium
        .load_pdf_from_file(path, None)
        .map_err(|e| anyhow!(describe_open_error(&e)))
}

/// PDF readers accept the `%PDF-` header anywhere in the first kilobyte.
fn starts_like_pdf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head.windows(5).any(|w| w == b"%PDF-"))
}

/// Says what a load failure means for the user.
fn describe_open_error(e: &PdfiumError) -> String {
    match e {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError) => {
            "the PDF is encrypted (password-protected); remove the password to index it".into()
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FormatError) => {
            "damaged PDF: PDFium cannot read its structure (truncated, corrupt, or without pages)"
                .into()
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => {
            "the PDF uses an unsupported security handler".into()
        }
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FileError) => {
            "cannot read the file".into()
        }
        PdfiumError::IoError(io) => format!("cannot read the file: {io}"),
        other => format!("cannot open the PDF: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn render_size_caps_pixels() {
        assert_eq!(
            render_size(595.0, 842.0, 144.0, 40_000_000).unwrap(),
            (1190, 1684)
        );
        let (w, h) = render_size(14400.0, 14400.0, 144.0, 1_000_000).unwrap();
        assert!((w as u64 * h as u64) <= 1_000_000 && w == h, "{w}×{h}");
        assert!(render_size(0.0, 10.0, 144.0, 100).is_err());
        assert!(render_size(f32::NAN, 10.0, 144.0, 100).is_err());
    }
}
