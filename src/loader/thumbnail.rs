//! Page thumbnails for the app, rendered by a render worker process of their own (the same
//! `__render-worker` as the loader's, kept running between requests). PDFium never runs in the
//! app's process: a PDF that crashes it kills only the worker, one that hangs it is killed after
//! the timeout; either way the request fails with the reason and the next starts a new worker.

use super::pool::{describe_exit, WorkerMsg, WorkerProcess, WorkerSpawn};
use super::protocol::{Reply, Request, ThumbnailRequest};
use anyhow::{bail, Result};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::path::Path;
use std::time::Duration;

pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    /// Packed 8-bit RGBA, opaque.
    pub rgba: Vec<u8>,
}

/// How long one thumbnail may take before its worker is killed as hung.
pub const DEFAULT_THUMBNAIL_TIMEOUT: Duration = Duration::from_secs(20);

/// The thumbnail worker and its replies.
pub struct ThumbnailRenderer {
    spawn: WorkerSpawn,
    timeout: Duration,
    worker: Option<WorkerProcess>,
    generation: u64,
    tx: Sender<WorkerMsg>,
    rx: Receiver<WorkerMsg>,
}

impl ThumbnailRenderer {
    /// Workers start from `spawn` when the first thumbnail is asked for.
    pub fn new(spawn: WorkerSpawn, timeout: Duration) -> ThumbnailRenderer {
        let (tx, rx) = unbounded();
        ThumbnailRenderer {
            spawn,
            timeout,
            worker: None,
            generation: 0,
            tx,
            rx,
        }
    }

    /// Renders page `page` (1-based) of `path` with its longer side `max_side` pixels.
    pub fn render(&mut self, path: &Path, page: u32, max_side: u32) -> Result<Thumbnail> {
        if page == 0 {
            bail!("page numbers start at 1");
        }
        let side = max_side.max(16);
        let req = Request::Thumbnail(ThumbnailRequest {
            path: path.to_path_buf(),
            page: page - 1,
            max_side: side,
            memory_cap_bytes: super::settings::memory_cap_for_pixels((side as u64).pow(2)),
        });
        if self.worker.is_none() {
            self.generation += 1;
            self.worker = Some(WorkerProcess::spawn(
                &self.spawn,
                0,
                self.generation,
                self.tx.clone(),
            )?);
        }
        let generation = self.generation;
        let sent = self.worker.as_mut().map(|w| w.send(&req));
        if let Some(Err(e)) = sent {
            let status = self.worker.take().and_then(WorkerProcess::kill);
            bail!(
                "the thumbnail worker stopped ({}; {e:#}); the next thumbnail starts a new one",
                describe_exit(status)
            );
        }
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                // A reply of a worker killed earlier: not this request's.
                Ok(
                    WorkerMsg::Reply { generation: g, .. } | WorkerMsg::Gone { generation: g, .. },
                ) if g != generation => {}
                Ok(WorkerMsg::Reply { reply, .. }) => {
                    return match reply {
                        Reply::Thumbnail { width, height, rgb } => Ok(Thumbnail {
                            width,
                            height,
                            rgba: rgba_from_rgb(&rgb),
                        }),
                        Reply::Error { message } => Err(anyhow::anyhow!(message)),
                        _ => {
                            self.worker.take().map(WorkerProcess::kill);
                            bail!("the thumbnail worker answered with something else; it was restarted")
                        }
                    };
                }
                Ok(WorkerMsg::Gone { why, .. }) => {
                    let status = self.worker.take().and_then(WorkerProcess::reap);
                    bail!(
                        "PDFium failed on page {page} of {} (the render worker {why}: {}); other thumbnails go on in a new worker",
                        path.display(),
                        describe_exit(status)
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.worker.take().map(WorkerProcess::kill);
                    bail!(
                        "page {page} of {} did not render within {} s (PDFium hung; its worker was killed and other thumbnails go on)",
                        path.display(),
                        self.timeout.as_secs_f32()
                    );
                }
                Err(RecvTimeoutError::Disconnected) => bail!("thumbnail reply channel closed"),
            }
        }
    }
}

fn rgba_from_rgb(rgb: &[u8]) -> Vec<u8> {
    let mut rgba = Vec::with_capacity(rgb.len() / 3 * 4);
    for px in rgb.chunks_exact(3) {
        rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
    }
    rgba
}
