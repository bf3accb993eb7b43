//! Page thumbnails: asked of the engine (`Command::Thumbnail`, rendered off the UI thread), turned
//! into textures on a decoder thread, cached by (file, page, size) with a bound on how many stay.

use crossbeam_channel::{Receiver, Sender};
use pagesight_engine::Command;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ThumbKey {
    pub file: PathBuf,
    pub page: u32,
    pub max_side: u32,
}

struct DecodeJob {
    key: ThumbKey,
    width: u32,
    height: u32,
    rgba: Arc<Vec<u8>>,
}

enum Decoded {
    Ready(ThumbKey, egui::TextureHandle),
    Bad(ThumbKey, String),
}

enum Slot {
    Requested,
    Ready {
        texture: egui::TextureHandle,
        last_used: u64,
    },
    Failed(String),
}

#[derive(Debug, Default)]
pub struct ThumbOutcomes<'a> {
    pub ready: usize,
    pub pending: usize,
    pub failed: Vec<&'a str>,
}

pub enum ThumbState<'a> {
    Missing,
    Loading,
    Ready(&'a egui::TextureHandle),
    Failed(&'a str),
}

pub struct Thumbnails {
    slots: HashMap<ThumbKey, Slot>,
    by_request: HashMap<u64, ThumbKey>,
    jobs: Sender<DecodeJob>,
    decoded: Receiver<Decoded>,
    capacity: usize,
    frame: u64,
}

impl Thumbnails {
    pub fn new(ctx: egui::Context, capacity: usize) -> Self {
        let (jobs, job_rx) = crossbeam_channel::unbounded::<DecodeJob>();
        let (done_tx, decoded) = crossbeam_channel::unbounded();
        // Ends when `jobs` is dropped with the app.
        let spawned = std::thread::Builder::new()
            .name("ui-thumbnails".into())
            .spawn(move || {
                for job in job_rx {
                    let _ = done_tx.send(decode(&ctx, job));
                    ctx.request_repaint();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("thumbnail decoder thread did not start: {e}; thumbnails stay empty");
        }
        Thumbnails {
            slots: HashMap::new(),
            by_request: HashMap::new(),
            jobs,
            decoded,
            capacity,
            frame: 0,
        }
    }

    /// Asks the engine for `key` unless it is cached or on its way.
    pub fn request(&mut self, key: &ThumbKey, request_id: u64, commands: &Sender<Command>) {
        if self.slots.contains_key(key) {
            return;
        }
        let cmd = Command::Thumbnail {
            id: request_id,
            file: key.file.clone(),
            page: key.page,
            max_side: key.max_side,
        };
        match commands.send(cmd) {
            Ok(()) => {
                self.slots.insert(key.clone(), Slot::Requested);
                self.by_request.insert(request_id, key.clone());
            }
            Err(_) => {
                self.slots.insert(
                    key.clone(),
                    Slot::Failed("the engine is not running".into()),
                );
            }
        }
    }

    /// What the cards show: thumbnails ready, still on their way, and why the others failed.
    pub fn outcomes(&self) -> ThumbOutcomes<'_> {
        let mut o = ThumbOutcomes::default();
        for s in self.slots.values() {
            match s {
                Slot::Requested => o.pending += 1,
                Slot::Ready { .. } => o.ready += 1,
                Slot::Failed(why) => o.failed.push(why),
            }
        }
        o
    }

    pub fn get(&mut self, key: &ThumbKey) -> ThumbState<'_> {
        match self.slots.get_mut(key) {
            None => ThumbState::Missing,
            Some(Slot::Requested) => ThumbState::Loading,
            Some(Slot::Ready { texture, last_used }) => {
                *last_used = self.frame;
                ThumbState::Ready(texture)
            }
            Some(Slot::Failed(why)) => ThumbState::Failed(why),
        }
    }

    /// An `Event::Thumbnail`: hands the pixels to the decoder thread.
    pub fn on_rendered(&mut self, id: u64, width: u32, height: u32, rgba: Arc<Vec<u8>>) {
        let Some(key) = self.by_request.remove(&id) else {
            return;
        };
        let _ = self.jobs.send(DecodeJob {
            key,
            width,
            height,
            rgba,
        });
    }

    /// An engine error about request `id`; returns whether it was one of ours.
    pub fn on_error(&mut self, id: u64, message: &str) -> bool {
        match self.by_request.remove(&id) {
            Some(key) => {
                self.slots.insert(key, Slot::Failed(message.to_owned()));
                true
            }
            None => false,
        }
    }

    /// Takes finished textures; called once per frame.
    pub fn poll(&mut self) {
        self.frame += 1;
        for d in self.decoded.try_iter() {
            match d {
                Decoded::Ready(key, texture) => {
                    self.slots.insert(
                        key,
                        Slot::Ready {
                            texture,
                            last_used: self.frame,
                        },
                    );
                }
                Decoded::Bad(key, why) => {
                    self.slots.insert(key, Slot::Failed(why));
                }
            }
        }
        self.evict();
    }

    /// Drops the least recently shown textures beyond the capacity.
    fn evict(&mut self) {
        let ready = self
            .slots
            .values()
            .filter(|s| matches!(s, Slot::Ready { .. }))
            .count();
        if ready <= self.capacity {
            return;
        }
        let mut ages: Vec<(u64, ThumbKey)> = self
            .slots
            .iter()
            .filter_map(|(k, s)| match s {
                Slot::Ready { last_used, .. } => Some((*last_used, k.clone())),
                _ => None,
            })
            .collect();
        ages.sort_by_key(|(t, _)| *t);
        for (_, key) in ages.into_iter().take(ready - self.capacity) {
            self.slots.remove(&key);
        }
    }

    pub fn textures_cached(&self) -> usize {
        self.slots
            .values()
            .filter(|s| matches!(s, Slot::Ready { .. }))
            .count()
    }
}

fn decode(ctx: &egui::Context, job: DecodeJob) -> Decoded {
    let DecodeJob {
        key,
        width,
        height,
        rgba,
    } = job;
    let expected = width as usize * height as usize * 4;
    if width == 0 || height == 0 || rgba.len() != expected {
        let why = format!(
            "thumbnail of {} page {} has {} bytes for {width}×{height} RGBA (expected {expected})",
            key.file.display(),
            key.page,
            rgba.len()
        );
        return Decoded::Bad(key, why);
    }
    let image = egui::ColorImage::from_rgba_unmultiplied([width as usize, height as usize], &rgba);
    let name = format!("thumb:{}#{}@{}", key.file.display(), key.page, key.max_side);
    let texture = ctx.load_texture(name, image, egui::TextureOptions::LINEAR);
    Decoded::Ready(key, texture)
}
