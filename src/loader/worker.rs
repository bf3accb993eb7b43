//! Render worker process (`pagesight __render-worker`), driven over stdin/stdout with the frames
//! of `protocol.rs`. It renders a page, resizes it to model resolution (smart_resize + bicubic),
//! and sends back 8-bit RGB plus the page's text. It exits when stdin closes.

use super::pdfium::PdfRenderer;
use super::protocol::{
    read_frame, write_frame, PageReply, RenderRequest, Reply, Request, ThumbnailRequest,
};
use anyhow::{Context, Result};
use pagesight_model::resize::{resize_bicubic_rgb, smart_resize};
use std::io::{BufReader, BufWriter};
use std::os::fd::FromRawFd;
use std::time::Instant;

/// Lowers the soft RLIMIT_DATA to the cap each render request carries
/// (`LoaderSettings::worker_memory_cap_bytes`); the hard limit stays, so a later request may
/// raise it again.
fn cap_memory(bytes: u64) {
    // SAFETY: an all-zero `rlimit` is a valid value of that plain C struct; getrlimit and
    // setrlimit only read or write the one struct passed, a live local, and change nothing but
    // this process's soft data limit.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_DATA, &mut lim) == 0 {
            lim.rlim_cur = (bytes as libc::rlim_t).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_DATA, &lim);
        }
    }
}

pub fn worker_main() -> Result<()> {
    // The protocol owns the original stdout; fd 1 is pointed at stderr so that anything a library
    // prints cannot corrupt the frames.
    // SAFETY: dup, dup2 and prctl take no pointers. `fd` is a fresh descriptor that nothing
    // else in the process knows of (checked valid), so the `File` becomes its only owner and
    // closes it once; fd 1 itself stays open (now a copy of stderr) for Rust's stdout.
    let proto = unsafe {
        let fd = libc::dup(1);
        if fd < 0 {
            anyhow::bail!("render worker: cannot duplicate stdout");
        }
        libc::dup2(2, 1);
        // Die with the parent even while busy in PDFium (stdin EOF covers the idle case).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        std::fs::File::from_raw_fd(fd)
    };
    let mut out = BufWriter::with_capacity(1 << 20, proto);
    let mut input = BufReader::new(std::io::stdin().lock());
    let fault = std::env::var(crate::env_vars::WORKER_FAULT)
        .ok()
        .filter(|_| cfg!(feature = "test-hooks"));
    let mut renderer: Option<PdfRenderer> = None;
    let mut resized = Vec::new();
    let mut capped_at = None;
    while let Some(frame) = read_frame(&mut input).context("render worker: reading request")? {
        let reply = match Request::decode(&frame) {
            Err(e) => Reply::Error {
                message: format!("bad request: {e:#}"),
            },
            Ok(req) => {
                if let Some(cap) = req.memory_cap_bytes() {
                    if capped_at != Some(cap) {
                        cap_memory(cap);
                        capped_at = Some(cap);
                    }
                }
                match handle(req, &mut renderer, &mut resized, fault.as_deref()) {
                    Ok(r) => r,
                    Err(e) => Reply::Error {
                        message: format!("{e:#}"),
                    },
                }
            }
        };
        write_frame(&mut out, &reply.encode()).context("render worker: writing reply")?;
    }
    Ok(())
}

fn handle(
    req: Request,
    renderer: &mut Option<PdfRenderer>,
    resized: &mut Vec<u8>,
    fault: Option<&str>,
) -> Result<Reply> {
    if renderer.is_none() {
        *renderer = Some(PdfRenderer::new()?);
    }
    let r = renderer.as_mut().expect("renderer set above");
    match req {
        Request::Count { path } => Ok(Reply::Count {
            pages: r.page_count(&path)?,
        }),
        Request::Render(req) => {
            inject_fault(&req.path, fault);
            render_page(r, &req, resized).map(Reply::Page)
        }
        Request::Thumbnail(t) => {
            inject_fault(&t.path, fault);
            render_thumbnail(r, &t)
        }
    }
}

/// Renders page `t.page` with its longer side `t.max_side` pixels.
fn render_thumbnail(r: &mut PdfRenderer, t: &ThumbnailRequest) -> Result<Reply> {
    let side = t.max_side.max(16);
    let (w_pt, h_pt) = r.page_size_pt(&t.path, t.page)?;
    let dpi = 72.0 * side as f32 / w_pt.max(h_pt).max(1.0);
    let img = r.render(&t.path, t.page, dpi, (side as u64).pow(2))?.image;
    Ok(Reply::Thumbnail {
        width: img.width,
        height: img.height,
        rgb: img.rgb,
    })
}

fn inject_fault(path: &std::path::Path, fault: Option<&str>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for rule in fault.unwrap_or_default().split(',') {
        let Some((kind, pattern)) = rule.split_once(':') else {
            continue;
        };
        if pattern.is_empty() || !name.contains(pattern) {
            continue;
        }
        match kind {
            "abort" => std::process::abort(),
            "hang" => {
                let mut marker = path.to_path_buf().into_os_string();
                marker.push(".hanging");
                let _ = std::fs::write(marker, b"");
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            _ => {}
        }
    }
}

/// Renders, then resizes to model resolution. Timings are per page, in seconds.
fn render_page(
    r: &mut PdfRenderer,
    req: &RenderRequest,
    resized: &mut Vec<u8>,
) -> Result<PageReply> {
    let t0 = Instant::now();
    let page = r.render(&req.path, req.page, req.dpi, req.max_render_pixels)?;
    let img = page.image;
    let render_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (h, w) = smart_resize(
        img.height,
        img.width,
        req.factor,
        req.min_pixels,
        req.max_pixels,
    )?;
    resize_bicubic_rgb(
        &img.rgb,
        img.height as usize,
        img.width as usize,
        h as usize,
        w as usize,
        resized,
    )?;
    let resize_secs = t1.elapsed().as_secs_f64();
    Ok(PageReply {
        width: w,
        height: h,
        render_secs,
        resize_secs,
        text: page.text,
        note: page.note,
        rgb: std::mem::take(resized),
    })
}
