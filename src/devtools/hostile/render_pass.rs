//! The slowest file to render: the corpus's PDFs through the loader alone (render worker
//! processes, no model, no fault injection), timing each file's pages in the worker. The ingest's
//! own events cannot say this: a file's result waits for its batch, so its wall time there
//! mostly measures the queue.

use anyhow::Result;
use pagesight_loader::LoaderSettings;
use pagesight_loader::{discover, Loader, LoaderEvent, PageJobFile};
use pagesight_model::PreprocessConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// (file relative to `root`, seconds rendering + resizing its pages), slowest first.
pub fn render_times(
    root: &Path,
    settings: &LoaderSettings,
    guard: Duration,
) -> Result<Vec<(PathBuf, f64)>> {
    let files = discover(root)?.files;
    let jobs = PageJobFile::whole_files(files.iter().map(|f| f.path.as_path()));
    let mut secs = vec![0.0f64; files.len()];
    let loader = Loader::start(jobs, settings, &PreprocessConfig::default())?;
    let deadline = std::time::Instant::now() + guard;
    while let Ok(ev) = loader.events().recv_deadline(deadline) {
        if let LoaderEvent::Page(p) = ev {
            secs[p.file_index] += p.render_secs + p.resize_secs;
        }
    }
    let mut out: Vec<(PathBuf, f64)> = files
        .into_iter()
        .zip(secs)
        .map(|(f, s)| {
            (
                f.path.strip_prefix(root).unwrap_or(&f.path).to_path_buf(),
                s,
            )
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}
