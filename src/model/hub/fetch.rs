//! One file of a repo into the cache: downloaded into `blobs/<hash>.incomplete` (resumed with an
//! HTTP `Range` from where an earlier attempt, or an earlier process, stopped), hashed as it
//! arrives (the kept prefix first), and renamed to `blobs/<hash>` only when the hash is the
//! hub's. A connection that breaks is resumed (three times, then the error says so); a file
//! whose hash is wrong is fetched once more from the start, then discarded.

use super::config::HubConfig;
use super::disk::is_disk_full;
use super::error::DownloadError;
use super::layout::RepoCache;
use super::listing::RemoteFile;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHUNK: usize = 256 * 1024;
const RESUMES: u32 = 3;

/// What one file's download needs from the whole.
pub(crate) struct FileJob<'a> {
    pub cfg: &'a HubConfig,
    pub agent: &'a ureq::Agent,
    pub repo: &'a str,
    pub commit: &'a str,
    pub cache: &'a RepoCache,
    pub file: &'a RemoteFile,
    pub cancel: &'a AtomicBool,
    /// Bytes written by this download so far (the disk-full test hook counts them).
    pub written: &'a mut u64,
}

/// How one attempt ended, when not with the whole verified file.
enum Stop {
    /// The connection broke or the server stopped early: resume.
    Lost(String),
    /// Every byte arrived but the hash is not the hub's.
    Mismatch(String),
    Fatal(DownloadError),
}

/// The file's URL at the listed commit (so every file comes from the same commit).
pub fn file_url(cfg: &HubConfig, repo: &str, commit: &str, file: &str) -> String {
    format!("{}/{repo}/resolve/{commit}/{file}", cfg.endpoint)
}

/// Downloads and verifies `job.file`; `progress(bytes of this file present)` as it goes.
pub(crate) fn fetch(job: &mut FileJob, progress: &mut dyn FnMut(u64)) -> Result<(), DownloadError> {
    let FileJob { cache, file, .. } = *job;
    if cache.has_blob(&file.hash, file.size) {
        progress(file.size);
        return Ok(());
    }
    let blobs = cache.blobs();
    std::fs::create_dir_all(&blobs)
        .map_err(|e| DownloadError::io(format!("creating {}", blobs.display()), e))?;
    let part_path = cache.incomplete(&file.hash);
    let mut part = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&part_path)
        .map_err(|e| DownloadError::io(format!("opening {}", part_path.display()), e))?;
    if !try_lock(&part) {
        return Err(DownloadError::Busy {
            repo: job.repo.into(),
            file: file.name.clone(),
            path: part_path,
        });
    }
    let (mut resumes, mut refetched) = (0, false);
    loop {
        match attempt(job, &mut part, progress) {
            Ok(()) => break,
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Lost(detail)) => {
                if resumes == RESUMES {
                    let done = part.metadata().map(|m| m.len()).unwrap_or(0);
                    return Err(DownloadError::ConnectionLost {
                        repo: job.repo.into(),
                        file: file.name.clone(),
                        done,
                        total: file.size,
                        detail,
                    });
                }
                resumes += 1;
                tracing::warn!("{} of {}: {detail}; resuming", file.name, job.repo);
                sleep_unless_cancelled(job.cancel, Duration::from_millis(500 << resumes))?;
            }
            Err(Stop::Mismatch(got)) => {
                tracing::warn!(
                    "{} of {} hashed to {got}, not the hub's {}: fetching it again",
                    file.name,
                    job.repo,
                    file.hash.hex()
                );
                let _ = part.set_len(0);
                progress(0);
                if refetched {
                    drop(part);
                    let _ = std::fs::remove_file(&part_path);
                    return Err(DownloadError::HashMismatch {
                        repo: job.repo.into(),
                        file: file.name.clone(),
                        expected: file.hash.hex().into(),
                        got,
                    });
                }
                refetched = true;
            }
        }
    }
    part.sync_all()
        .map_err(|e| DownloadError::io(format!("syncing {}", part_path.display()), e))?;
    drop(part);
    let blob = cache.blob(&file.hash);
    std::fs::rename(&part_path, &blob).map_err(|e| {
        DownloadError::io(
            format!("renaming {} to {}", part_path.display(), blob.display()),
            e,
        )
    })?;
    let _ = pagesight_common::fs::fsync_dir(&blobs);
    Ok(())
}

fn attempt(job: &mut FileJob, part: &mut File, progress: &mut dyn FnMut(u64)) -> Result<(), Stop> {
    let file = job.file;
    let io = |what: &str, e: std::io::Error| {
        Stop::Fatal(DownloadError::io(
            format!("{what} {}", job.cache.incomplete(&file.hash).display()),
            e,
        ))
    };
    let mut have = part.metadata().map_err(|e| io("reading", e))?.len();
    if have > file.size {
        part.set_len(0).map_err(|e| io("truncating", e))?;
        have = 0;
    }
    // The prefix an earlier attempt kept is hashed first.
    let mut hasher = file.hash.hasher(file.size);
    part.seek(SeekFrom::Start(0))
        .map_err(|e| io("reading", e))?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = have;
    while left > 0 {
        let n = part
            .read(&mut buf[..CHUNK.min(left as usize)])
            .map_err(|e| io("reading", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
        cancelled(job.cancel)?;
    }
    progress(have);
    if have < file.size {
        let url = file_url(job.cfg, job.repo, job.commit, &file.name);
        let mut req = job.cfg.get(job.agent, &url);
        if have > 0 {
            req = req.set("Range", &format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code @ (401 | 403), _)) => {
                return Err(Stop::Fatal(DownloadError::Refused {
                    repo: job.repo.into(),
                    status: code,
                    url,
                }))
            }
            Err(ureq::Error::Status(404, _)) => {
                return Err(Stop::Fatal(DownloadError::FileNotFound {
                    repo: job.repo.into(),
                    file: file.name.clone(),
                    url,
                    what: "file the hub's list named a moment ago",
                }))
            }
            Err(ureq::Error::Status(416, _)) => {
                // The kept prefix does not fit what the server has: start over.
                part.set_len(0).map_err(|e| io("truncating", e))?;
                return Err(Stop::Lost(
                    "the server refused the resume range; starting the file over".into(),
                ));
            }
            Err(ureq::Error::Status(code, _)) if code >= 500 || code == 429 => {
                return Err(Stop::Lost(format!("HTTP {code} for {url}")))
            }
            Err(ureq::Error::Status(code, _)) => {
                return Err(Stop::Fatal(DownloadError::Http {
                    what: format!("{} of {}", file.name, job.repo),
                    status: code,
                    url,
                }))
            }
            Err(ureq::Error::Transport(t)) => return Err(Stop::Lost(t.to_string())),
        };
        let start = match resp.status() {
            206 => resp
                .header("Content-Range")
                .and_then(|r| r.trim().strip_prefix("bytes "))
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, _)| a.trim().parse::<u64>().ok())
                .unwrap_or(u64::MAX),
            _ => 0,
        };
        if start != have {
            // The server sent the whole file (or another range): keep none of the prefix.
            if start != 0 {
                part.set_len(0).map_err(|e| io("truncating", e))?;
                return Err(Stop::Lost(format!(
                    "the server answered the range bytes={have}- with another one"
                )));
            }
            part.set_len(0).map_err(|e| io("truncating", e))?;
            have = 0;
            hasher = file.hash.hasher(file.size);
            progress(0);
        }
        part.seek(SeekFrom::Start(have))
            .map_err(|e| io("seeking in", e))?;
        let mut body = resp.into_reader();
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Stop::Lost(format!("reading from the server: {e}"))),
            };
            if have + n as u64 > file.size {
                return Err(Stop::Mismatch(format!(
                    "more than the {} bytes the hub listed",
                    file.size
                )));
            }
            let (ok, fault) = hooked_len(job, n);
            if let Err(e) = part.write_all(&buf[..ok]).and(fault) {
                let _ = part.sync_data();
                if is_disk_full(&e) {
                    let kept = have;
                    return Err(Stop::Fatal(DownloadError::DiskFull {
                        repo: job.repo.into(),
                        file: file.name.clone(),
                        dir: job.cache.blobs(),
                        kept,
                        missing: file.size - kept,
                    }));
                }
                return Err(io("writing", e));
            }
            *job.written += n as u64;
            hasher.update(&buf[..n]);
            have += n as u64;
            progress(have);
            if job.cancel.load(Ordering::Relaxed) {
                let _ = part.sync_data();
                return Err(Stop::Fatal(DownloadError::Cancelled));
            }
        }
        if have < file.size {
            return Err(Stop::Lost(format!(
                "the server closed the connection after {have} of {} bytes",
                file.size
            )));
        }
    }
    let got = hasher.finish_hex();
    if got != file.hash.hex() {
        return Err(Stop::Mismatch(got));
    }
    Ok(())
}

/// How much of an `n`-byte write goes through, and the error after it: the test hook's disk
/// fills after `fake_disk_full_after` bytes.
fn hooked_len(job: &FileJob, n: usize) -> (usize, std::io::Result<()>) {
    #[cfg(feature = "test-hooks")]
    if let Some(limit) = job.cfg.fake_disk_full_after {
        let room = limit.saturating_sub(*job.written);
        if (n as u64) > room {
            return (0, Err(std::io::Error::from_raw_os_error(libc::ENOSPC)));
        }
    }
    let _ = job;
    (n, Ok(()))
}

fn cancelled(cancel: &AtomicBool) -> Result<(), Stop> {
    if cancel.load(Ordering::Relaxed) {
        Err(Stop::Fatal(DownloadError::Cancelled))
    } else {
        Ok(())
    }
}

fn sleep_unless_cancelled(cancel: &AtomicBool, d: Duration) -> Result<(), DownloadError> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < d {
        if cancel.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// An exclusive, non-blocking lock on the partial file, so two processes never write one blob.
#[cfg(unix)]
fn try_lock(f: &File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this `File` owns; the lock goes with the descriptor.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_f: &File) -> bool {
    true
}
