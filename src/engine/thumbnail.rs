//! Page thumbnails rendered off the UI thread, by a render worker process (never PDFium in this
//! process): a PDF that crashes or hangs PDFium fails its own thumbnail, with the reason, and the
//! next thumbnails keep coming.

use super::event::Event;
use crossbeam_channel::Sender;
use pagesight_loader::ThumbnailRenderer;
use std::path::PathBuf;
use std::sync::Arc;

pub struct ThumbnailService {
    requests: Sender<(u64, PathBuf, u32, u32)>,
}

impl ThumbnailService {
    pub fn spawn(events: Sender<Event>, mut renderer: ThumbnailRenderer) -> ThumbnailService {
        let requests = super::service::spawn(
            "pagesight-thumbnails",
            events,
            move |(id, file, page, max_side): (u64, PathBuf, u32, u32)| match renderer
                .render(&file, page, max_side)
            {
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
            },
        );
        ThumbnailService { requests }
    }

    pub fn submit(&self, id: u64, file: PathBuf, page: u32, max_side: u32) {
        let _ = self.requests.send((id, file, page, max_side));
    }
}
