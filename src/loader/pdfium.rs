//! PDFium through pdfium-render: open a document, count pages, render one page to packed RGB on
//! white, and read its text layer. PDFium is not thread-safe, so the loader calls this from
//! render worker processes (see `worker.rs`); one process binds the library once.

use anyhow::{anyhow, bail, Context, Result};
use pdfium_render::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The process's PDFium, bound on first use from [`pagesight_common::paths::find_pdfium`].
pub fn pdfium() -> Result<&'static Pdfium> {
    static PDFIUM: OnceLock<Result<Pdfium, String>> = OnceLock::new();
    let bound = PDFIUM.get_or_init(|| {
        let lib = pagesight_common::paths::find_pdfium().map_err(|e| format!("{e:#}"))?;
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

/// The pixel size a page renders at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderSize {
    pub width: u32,
    pub height: u32,
    /// Pixels the page would have had at the asked resolution, when that was over the cap.
    pub capped_from: Option<f64>,
}

impl RenderSize {
    /// What the user should know about a capped page: "page too large (…): rendered at …".
    pub fn note(&self, w_pt: f32, h_pt: f32, dpi: f32) -> Option<String> {
        let full = self.capped_from?;
        let mm = |pt: f32| pt as f64 / 72.0 * 25.4;
        Some(format!(
            "page too large ({:.0} × {:.0} mm = {:.0} megapixels at {dpi} dpi): capped to {:.1} \
             megapixels ({} × {} pixels)",
            mm(w_pt),
            mm(h_pt),
            full / 1e6,
            self.width as f64 * self.height as f64 / 1e6,
            self.width,
            self.height
        ))
    }
}

/// Pixel size of a page box of `w_pt × h_pt` points at `dpi`, scaled down (aspect kept) so that
/// it holds at most `max_pixels` pixels; at least 1×1.
pub fn render_size(w_pt: f32, h_pt: f32, dpi: f32, max_pixels: u64) -> Result<RenderSize> {
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
    Ok(RenderSize {
        width: px(w),
        height: px(h),
        capped_from: capped.then_some(area),
    })
}

/// A rendered page: pixels, text layer, and a note when it was rendered below the asked
/// resolution.
pub struct RenderedImage {
    pub image: RgbImage,
    pub text: String,
    pub note: Option<String>,
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
            .map_err(|e| anyhow!("damaged PDF: {}", describe_page_error(index, &e)))?;
        Ok((page.width().value, page.height().value))
    }

    /// Renders page `index` (0-based) at `dpi`, capped at `max_pixels`, onto white; returns the
    /// pixels, the page's text layer and a note when the cap applied.
    pub fn render(
        &mut self,
        path: &Path,
        index: u32,
        dpi: f32,
        max_pixels: u64,
    ) -> Result<RenderedImage> {
        let doc = self.document(path)?;
        let count = doc.pages().len().max(0) as u32;
        if index >= count {
            bail!("page {} does not exist (the PDF has {count})", index + 1);
        }
        let page = doc
            .pages()
            .get(index as PdfPageIndex)
            .map_err(|e| anyhow!("damaged PDF: {}", describe_page_error(index, &e)))?;
        let (w_pt, h_pt) = (page.width().value, page.height().value);
        let size = render_size(w_pt, h_pt, dpi, max_pixels)?;
        let config = PdfRenderConfig::new()
            .set_fixed_size(size.width as Pixels, size.height as Pixels)
            .set_format(PdfBitmapFormat::BGRA)
            .set_reverse_byte_order(false)
            .set_clear_color(PdfColor::WHITE)
            .clear_before_rendering(true);
        let bitmap = page
            .render_with_config(&config)
            .map_err(|e| anyhow!("rendering failed: {}", short_error(&e)))?;
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
        Ok(RenderedImage {
            image: RgbImage {
                width: bw as u32,
                height: bh as u32,
                rgb,
            },
            text,
            note: size.note(w_pt, h_pt, dpi),
        })
    }
}

fn open_document(pdfium: &'static Pdfium, path: &Path) -> Result<PdfDocument<'static>> {
    let head = read_head(path)?;
    if head.is_empty() {
        bail!("the file is empty");
    }
    if !head.windows(5).any(|w| w == b"%PDF-") {
        bail!("{}", describe_non_pdf(&head));
    }
    pdfium
        .load_pdf_from_file(path, None)
        .map_err(|e| anyhow!(describe_open_error(&e)))
}

/// The first kilobyte: PDF readers accept the `%PDF-` header anywhere in it.
fn read_head(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    if let Some(e) = super::fault::injected_read_error(path) {
        return Err(e).with_context(|| format!("cannot read {}", path.display()));
    }
    let mut head = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head)
}

/// "not a PDF (looks like HTML …)": what a file without a PDF header seems to be, from its first
/// bytes, so the user knows which download or export went wrong.
pub fn describe_non_pdf(head: &[u8]) -> String {
    let trimmed = head.trim_ascii_start();
    let lower: Vec<u8> = trimmed
        .iter()
        .take(64)
        .map(u8::to_ascii_lowercase)
        .collect();
    let what = if trimmed.is_empty() {
        return "the file is empty (only whitespace)".into();
    } else if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        "looks like HTML: probably a web page saved instead of the PDF"
    } else if lower.starts_with(b"<?xml") || lower.starts_with(b"<") {
        "looks like XML or HTML"
    } else if head.starts_with(b"\x89PNG") {
        "looks like a PNG image"
    } else if head.starts_with(b"\xFF\xD8\xFF") {
        "looks like a JPEG image"
    } else if head.starts_with(b"PK\x03\x04") {
        "looks like a ZIP archive (e.g. a Word or OpenDocument file)"
    } else if head.starts_with(b"%!PS") {
        "looks like PostScript"
    } else if std::str::from_utf8(head).is_ok_and(|t| !t.contains('\0')) {
        "looks like plain text"
    } else {
        "unknown binary content"
    };
    format!("not a PDF ({what}; the file does not start with %PDF-)")
}

/// "page 3 cannot be loaded (…)": the page object is missing or broken (e.g. a page tree that
/// loops back on itself).
fn describe_page_error(index: u32, e: &PdfiumError) -> String {
    format!("page {} cannot be loaded ({})", index + 1, short_error(e))
}

/// PDFium's error on one line, without Rust's debug layout.
fn short_error(e: &PdfiumError) -> String {
    match e {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::Unknown) => {
            "PDFium reports an unspecified error".into()
        }
        PdfiumError::PdfiumLibraryInternalError(i) => format!("PDFium: {i:?}"),
        other => format!("{other:?}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    }
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
        other => format!("damaged PDF: cannot open it ({})", short_error(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn render_size_caps_pixels() {
        let a4 = render_size(595.0, 842.0, 144.0, 40_000_000).unwrap();
        assert_eq!((a4.width, a4.height, a4.capped_from), (1190, 1684, None));
        assert!(a4.note(595.0, 842.0, 144.0).is_none());
        let big = render_size(14400.0, 14400.0, 144.0, 1_000_000).unwrap();
        let (w, h) = (big.width, big.height);
        assert!((w as u64 * h as u64) <= 1_000_000 && w == h, "{w}×{h}");
        let note = big.note(14400.0, 14400.0, 144.0).unwrap();
        assert!(
            note.contains("page too large (5080 × 5080 mm = 829 megapixels"),
            "{note}"
        );
        assert!(render_size(0.0, 10.0, 144.0, 100).is_err());
        assert!(render_size(f32::NAN, 10.0, 144.0, 100).is_err());
    }

    #[test]
    fn non_pdfs_are_named() {
        assert!(describe_non_pdf(b"\n <!DOCTYPE html><html>").contains("HTML"));
        assert!(describe_non_pdf(b"\x89PNG\r\n").contains("PNG"));
        assert!(describe_non_pdf(b"PK\x03\x04").contains("ZIP"));
        assert!(describe_non_pdf(b" \n").contains("empty"));
        assert!(describe_non_pdf(&[0, 159, 146, 150]).contains("binary"));
    }
}
