//! A service: one named thread answering requests in order, each with one event. The engine
//! hands searches, index statistics and thumbnails to services so its own thread only steers.

use super::event::Event;
use crossbeam_channel::{unbounded, Sender};

/// Spawns the thread; it ends when the returned sender drops or the events' receiver is gone.
pub fn spawn<T: Send + 'static>(
    name: &str,
    events: Sender<Event>,
    mut answer: impl FnMut(T) -> Event + Send + 'static,
) -> Sender<T> {
    let (tx, rx) = unbounded::<T>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Ok(request) = rx.recv() {
                if events.send(answer(request)).is_err() {
                    break;
                }
            }
        })
        .unwrap_or_else(|e| panic!("spawn the {name} thread: {e}"));
    tx
}
