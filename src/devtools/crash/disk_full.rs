//! Disk full during commit, injected two honest ways: a file-size rlimit (the kernel fails the
//! write with EFBIG, SIGXFSZ ignored) and the store's write-fault hook (ENOSPC / EDQUOT / EFBIG
//! at the n-th segment or manifest write). Each must end in a clean error that says "disk is
//! full", names the index and what to do, exits non-zero, and leaves the previous commit intact;
//! the next ingest with space back completes.

use super::check::inspect;
use super::child::{IngestSpec, RunOpts};
use super::kill::Reference;
use anyhow::{Context, Result};
use pagesight_index::format::{MANIFEST_FILE, SEGMENTS_DIR};
use std::path::Path;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DiskFullFigures {
    pub cases: usize,
    /// Runs that stopped with the disk-full message, the index path and a non-zero exit.
    pub clean_errors: usize,
    /// The index still held its last commit, verified.
    pub previous_commit_intact: usize,
    /// The next run (space back) completed equal to the uninterrupted one.
    pub recovered: usize,
    /// One message as the user sees it.
    pub example_message: String,
    pub problems: Vec<String>,
}

/// How a case fails its writes.
#[derive(Clone, Debug)]
enum Injection {
    FileSizeLimit,
    Fault(String),
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), &dst)
                .with_context(|| format!("cannot copy {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// `spec.corpus`'s files, split: the first `first` go in before the disk fills.
pub fn disk_full_cases(
    spec: &IngestSpec,
    work: &Path,
    reference: &Reference,
    first: usize,
) -> Result<DiskFullFigures> {
    let mut files: Vec<_> = std::fs::read_dir(&spec.corpus)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let corpus = work.join("df-corpus");
    let _ = std::fs::remove_dir_all(&corpus);
    std::fs::create_dir_all(&corpus)?;
    let place = |fs: &[std::path::PathBuf]| -> Result<()> {
        for f in fs {
            std::fs::copy(f, corpus.join(f.file_name().unwrap_or_default()))?;
        }
        Ok(())
    };
    let first = first.min(files.len());
    place(&files[..first])?;
    let df = IngestSpec {
        corpus: corpus.clone(),
        ..spec.clone()
    };
    let base = work.join("df-base");
    let _ = std::fs::remove_dir_all(&base);
    let ended = df.run(&base, work, "df-base", &RunOpts::default())?;
    anyhow::ensure!(
        ended.status.success(),
        "ingest before the disk fills failed: {}",
        ended.stderr
    );
    place(&files[first..])?;
    // Smaller than any segment of one commit, larger than the manifest: the segment write fails.
    let smallest_segment = std::fs::read_dir(base.join(SEGMENTS_DIR))?
        .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
        .min()
        .unwrap_or(4096);
    let manifest_len = std::fs::metadata(base.join(MANIFEST_FILE))?.len();
    let limit = (smallest_segment - 1).max(manifest_len * 3);
    let mut cases = vec![Injection::FileSizeLimit];
    // Writes of the first commit: segment zero-fill, one per page, header, then the manifest
    // (after tantivy committed); then the first write of the second commit.
    for n in 1..=(spec.commit_every as u64 + 4) {
        cases.push(Injection::Fault(format!("enospc:{n}")));
    }
    cases.push(Injection::Fault("edquot:2".into()));
    cases.push(Injection::Fault("efbig:1".into()));
    let mut f = DiskFullFigures {
        cases: cases.len(),
        ..Default::default()
    };
    let dir = work.join("df-case");
    for case in cases {
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&base, &dir)?;
        let before = inspect(&dir)?.state;
        let opts = match &case {
            Injection::FileSizeLimit => RunOpts {
                file_size_limit: Some(limit),
                ..Default::default()
            },
            Injection::Fault(v) => RunOpts {
                write_fault: Some(v.clone()),
                ..Default::default()
            },
        };
        let tag = match &case {
            Injection::FileSizeLimit => format!("RLIMIT_FSIZE {limit} B"),
            Injection::Fault(v) => format!("fault {v}"),
        };
        let ended = df.run(&dir, work, "df-case", &opts)?;
        let msg = ended.stderr.trim().to_string();
        let names_index = msg.contains(&dir.display().to_string());
        if !ended.status.success()
            && msg.contains("disk is full")
            && msg.contains("free some disk space")
            && names_index
        {
            f.clean_errors += 1;
            if f.example_message.is_empty() {
                f.example_message = msg.lines().last().unwrap_or_default().to_string();
            }
        } else {
            f.problems.push(format!(
                "{tag}: expected a disk-full error naming {} and a non-zero exit, got {} and {msg:?}",
                dir.display(),
                ended.status
            ));
        }
        // The commit before the failure, or the base index when none finished.
        let expected = ended.trace.last_end().or(before);
        let got = inspect(&dir)?;
        if got.state == expected && got.problems.is_empty() {
            f.previous_commit_intact += 1;
        } else {
            f.problems.push(format!(
                "{tag}: after the error the index holds {:?} (expected {expected:?}), problems {:?}",
                got.state, got.problems
            ));
        }
        let diff = reference.finish_and_compare(&df, &dir, work, "with space back", &tag)?;
        f.recovered += usize::from(diff.is_empty());
        f.problems.extend(diff);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}
