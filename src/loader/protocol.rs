//! The render worker's wire protocol over stdin/stdout: frames of a little-endian `u32` length
//! followed by that many bytes; the first byte of a frame says what it is.
//!
//! Requests: `Count { path }` → `Count { pages }`; `Render { path, page, … }` → `Page { … }`
//! (pixels already at model resolution); `Thumbnail { path, page, max_side, … }` → `Thumbnail`
//! (RGB, longer side `max_side`). Any may be answered with `Error { message }`.

use anyhow::{bail, Context, Result};
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;

/// Largest frame accepted (a page at model resolution is a few MB; this only guards against a
/// corrupt length making us allocate gigabytes).
const MAX_FRAME: usize = 512 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct RenderRequest {
    pub path: PathBuf,
    /// 0-based page index.
    pub page: u32,
    pub dpi: f32,
    pub max_render_pixels: u64,
    /// The worker's data memory cap (RLIMIT_DATA), set before it renders.
    pub memory_cap_bytes: u64,
    /// smart_resize parameters.
    pub factor: u32,
    pub min_pixels: u32,
    pub max_pixels: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ThumbnailRequest {
    pub path: PathBuf,
    /// 0-based page index.
    pub page: u32,
    /// The longer side in pixels.
    pub max_side: u32,
    /// The worker's data memory cap (RLIMIT_DATA) while it renders.
    pub memory_cap_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Count { path: PathBuf },
    Render(RenderRequest),
    Thumbnail(ThumbnailRequest),
}

impl Request {
    /// The memory cap the worker applies for this request, if it carries one.
    pub fn memory_cap_bytes(&self) -> Option<u64> {
        match self {
            Request::Count { .. } => None,
            Request::Render(r) => Some(r.memory_cap_bytes),
            Request::Thumbnail(t) => Some(t.memory_cap_bytes),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PageReply {
    /// Model resolution.
    pub width: u32,
    pub height: u32,
    pub render_secs: f64,
    pub resize_secs: f64,
    pub text: String,
    /// Set when the page was rendered below the asked resolution (the pixel cap).
    pub note: Option<String>,
    pub rgb: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Count {
        pages: u32,
    },
    Page(PageReply),
    /// Packed 8-bit RGB, `height × width × 3`.
    Thumbnail {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
    Error {
        message: String,
    },
}

const REQ_COUNT: u8 = 1;
const REQ_RENDER: u8 = 2;
const REQ_THUMBNAIL: u8 = 3;
const REP_COUNT: u8 = 1;
const REP_PAGE: u8 = 2;
const REP_ERROR: u8 = 3;
const REP_THUMBNAIL: u8 = 4;

struct Enc(Vec<u8>);

impl Enc {
    fn new(tag: u8) -> Self {
        Enc(vec![tag])
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            bail!(
                "truncated message ({} bytes, needed {} more at {})",
                self.buf.len(),
                n,
                self.pos
            );
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u64()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
    fn path(&mut self) -> Result<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(self.bytes()?)))
    }
}

fn path_bytes(p: &std::path::Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Count { path } => {
                let mut e = Enc::new(REQ_COUNT);
                e.bytes(path_bytes(path));
                e.0
            }
            Request::Render(r) => {
                let mut e = Enc::new(REQ_RENDER);
                e.bytes(path_bytes(&r.path));
                e.u32(r.page);
                e.f32(r.dpi);
                e.u64(r.max_render_pixels);
                e.u64(r.memory_cap_bytes);
                e.u32(r.factor);
                e.u32(r.min_pixels);
                e.u32(r.max_pixels);
                e.0
            }
            Request::Thumbnail(t) => {
                let mut e = Enc::new(REQ_THUMBNAIL);
                e.bytes(path_bytes(&t.path));
                e.u32(t.page);
                e.u32(t.max_side);
                e.u64(t.memory_cap_bytes);
                e.0
            }
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Request> {
        let mut d = Dec { buf, pos: 1 };
        match buf.first() {
            Some(&REQ_COUNT) => Ok(Request::Count { path: d.path()? }),
            Some(&REQ_RENDER) => Ok(Request::Render(RenderRequest {
                path: d.path()?,
                page: d.u32()?,
                dpi: d.f32()?,
                max_render_pixels: d.u64()?,
                memory_cap_bytes: d.u64()?,
                factor: d.u32()?,
                min_pixels: d.u32()?,
                max_pixels: d.u32()?,
            })),
            Some(&REQ_THUMBNAIL) => Ok(Request::Thumbnail(ThumbnailRequest {
                path: d.path()?,
                page: d.u32()?,
                max_side: d.u32()?,
                memory_cap_bytes: d.u64()?,
            })),
            other => bail!("unknown request tag {other:?}"),
        }
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Count { pages } => {
                let mut e = Enc::new(REP_COUNT);
                e.u32(*pages);
                e.0
            }
            Reply::Page(p) => {
                let mut e = Enc::new(REP_PAGE);
                e.0.reserve(p.rgb.len() + p.text.len() + 64);
                e.u32(p.width);
                e.u32(p.height);
                e.f64(p.render_secs);
                e.f64(p.resize_secs);
                e.bytes(p.text.as_bytes());
                e.bytes(p.note.as_deref().unwrap_or_default().as_bytes());
                e.bytes(&p.rgb);
                e.0
            }
            Reply::Thumbnail { width, height, rgb } => {
                let mut e = Enc::new(REP_THUMBNAIL);
                e.u32(*width);
                e.u32(*height);
                e.bytes(rgb);
                e.0
            }
            Reply::Error { message } => {
                let mut e = Enc::new(REP_ERROR);
                e.bytes(message.as_bytes());
                e.0
            }
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Reply> {
        let mut d = Dec { buf, pos: 1 };
        match buf.first() {
            Some(&REP_COUNT) => Ok(Reply::Count { pages: d.u32()? }),
            Some(&REP_PAGE) => {
                let (width, height) = (d.u32()?, d.u32()?);
                let (render_secs, resize_secs) = (d.f64()?, d.f64()?);
                let text = d.string()?;
                let note = Some(d.string()?).filter(|n| !n.is_empty());
                let rgb = d.bytes()?.to_vec();
                if rgb.len() != width as usize * height as usize * 3 {
                    bail!(
                        "page reply holds {} bytes for {width}×{height} RGB",
                        rgb.len()
                    );
                }
                Ok(Reply::Page(PageReply {
                    width,
                    height,
                    render_secs,
                    resize_secs,
                    text,
                    note,
                    rgb,
                }))
            }
            Some(&REP_THUMBNAIL) => {
                let (width, height) = (d.u32()?, d.u32()?);
                let rgb = d.bytes()?.to_vec();
                if rgb.len() != width as usize * height as usize * 3 {
                    bail!(
                        "thumbnail reply holds {} bytes for {width}×{height} RGB",
                        rgb.len()
                    );
                }
                Ok(Reply::Thumbnail { width, height, rgb })
            }
            Some(&REP_ERROR) => Ok(Reply::Error {
                message: d.string()?,
            }),
            other => bail!("unknown reply tag {other:?}"),
        }
    }
}

/// Writes one frame and flushes.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> Result<()> {
    w.write_all(&(body.len() as u32).to_le_bytes())?;
    w.write_all(body)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading frame length"),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        bail!("bad frame length {n}");
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).context("reading frame body")?;
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let reqs = [
            Request::Count {
                path: "/tmp/a b.pdf".into(),
            },
            Request::Render(RenderRequest {
                path: "x.pdf".into(),
                page: 3,
                dpi: 144.0,
                max_render_pixels: 40_000_000,
                memory_cap_bytes: 400 << 20,
                factor: 28,
                min_pixels: 3136,
                max_pixels: 602112,
            }),
            Request::Thumbnail(ThumbnailRequest {
                path: "t.pdf".into(),
                page: 0,
                max_side: 256,
                memory_cap_bytes: 1 << 30,
            }),
        ];
        for r in reqs {
            let mut buf = Vec::new();
            write_frame(&mut buf, &r.encode()).unwrap();
            let body = read_frame(&mut buf.as_slice()).unwrap().unwrap();
            assert_eq!(Request::decode(&body).unwrap(), r);
        }
        let reps = [
            Reply::Count { pages: 7 },
            Reply::Page(PageReply {
                width: 2,
                height: 1,
                render_secs: 0.5,
                resize_secs: 0.25,
                text: "héllo".into(),
                note: Some("capped".into()),
                rgb: vec![1, 2, 3, 4, 5, 6],
            }),
            Reply::Thumbnail {
                width: 1,
                height: 2,
                rgb: vec![9; 6],
            },
            Reply::Error {
                message: "boom".into(),
            },
        ];
        for r in reps {
            assert_eq!(Reply::decode(&r.encode()).unwrap(), r);
        }
        assert!(read_frame(&mut [].as_slice()).unwrap().is_none());
        assert!(Reply::decode(&[9]).is_err());
        assert!(Reply::decode(&[REP_PAGE, 1, 0]).is_err());
        let short = Reply::Thumbnail {
            width: 2,
            height: 2,
            rgb: vec![0; 3],
        };
        assert!(Reply::decode(&short.encode()).is_err());
    }
}
