//! Page thumbnails for the app. Rendered in-process (only the engine's thumbnail thread calls
//! this; pdfium-render serialises PDFium calls), at a resolution that makes the longer side
//! `max_side` pixels.

use super::pdfium::PdfRenderer;
use anyhow::{bail, Result};
use std::path::Path;

pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    /// Packed 8-bit RGBA, opaque.
    pub rgba: Vec<u8>,
}

/// Renders page `page` (1-based) of `path` with its longer side `max_side` pixels.
pub fn thumbnail(path: &Path, page: u32, max_side: u32) -> Result<Thumbnail> {
    if page == 0 {
        bail!("page numbers start at 1");
    }
    let mut r = PdfRenderer::new()?;
    let (w_pt, h_pt) = r.page_size_pt(path, page - 1)?;
    let dpi = 72.0 * max_side.max(16) as f32 / w_pt.max(h_pt).max(1.0);
    let cap = (max_side.max(16) as u64).pow(2);
    let img = r.render(path, page - 1, dpi, cap)?.image;
    let mut rgba = Vec::with_capacity(img.rgb.len() / 3 * 4);
    for px in img.rgb.chunks_exact(3) {
        rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
    }
    Ok(Thumbnail {
        width: img.width,
        height: img.height,
        rgba,
    })
}
