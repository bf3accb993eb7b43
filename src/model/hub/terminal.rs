//! The download's progress on the terminal (an indicatif bar on stderr; hidden when stderr is
//! not a terminal), for the command line's `--model <hub id>`.

use super::progress::DownloadProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// A progress callback drawing one bar for the whole download.
pub fn terminal_progress() -> impl FnMut(&DownloadProgress) {
    let mut bar: Option<ProgressBar> = None;
    move |p: &DownloadProgress| {
        let b = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(p.total);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b
        });
        b.set_length(p.total);
        b.set_position(p.done);
        b.set_message(format!("{} {}", p.repo, p.file));
        if p.done >= p.total {
            b.finish_and_clear();
        }
    }
}
