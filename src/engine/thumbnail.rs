//! Page thumbnails rendered off the UI thread (PDFium in this process, behind its lock).

use super::event::Event;
use crossbeam_channel::{unbounded, Sender};
use std::path::PathBuf;
use std::sync::Arc;

pub struct ThumbnailService {
    requests: Sender<(u64, PathBuf, u32, u32)>,
}

impl ThumbnailService {
    pub fn spawn(events: Sender<Event>) -> ThumbnailService {
        let (tx, rx) = unbounded::<(u64, PathBuf, u32, u32)>();
        std::thread::Builder::new()
            .name("pagesight-thumbnails".into())
            .spawn(move || {
                while let Ok((id, file, page, max_side)) = rx.recv() {
                    let e = match pagesight_loader::thumbnail(&file, page, max_side) {
                        Ok(t) => Event::Thumbnail {
                            id,
                            file,
                            page,
                            width: t.width,
                            height: t.height,
                            rgba: Arc::new(t.rgba),
                        },
                        Err(e) => Event::Error {
                            context: format!("thumbnail of {} page {page}", file.display()),
                            message: format!("{e:#}"),
                            request_id: Some(id),
                        },
                    };
                    if events.send(e).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn thumbnail thread");
        ThumbnailService { requests: tx }
    }

    pub fn submit(&self, id: u64, file: PathBuf, page: u32, max_side: u32) {
        let _ = self.requests.send((id, file, page, max_side));
    }
}
