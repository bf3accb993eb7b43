//! A whole download: list the repos, check the disk, fetch every missing file (verified), then
//! link the snapshot and point `refs/main` at it. The snapshot is linked only once every file
//! of the repo is verified, and `refs/main` written last, so a download that stops part-way
//! leaves no snapshot that loads — only blobs and `.incomplete` files the next one resumes.

use super::config::HubConfig;
use super::disk::free_bytes;
use super::error::DownloadError;
use super::fetch::{fetch, FileJob};
use super::layout::{complete_snapshot, RepoCache, RepoKind};
use super::listing::{list, RepoListing};
use super::progress::{eta, DownloadProgress, SpeedMeter};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Room kept free beyond the download itself.
const DISK_MARGIN: u64 = 64 << 20;
/// Progress reports at most this often (and at the end of every file).
const REPORT_EVERY: Duration = Duration::from_millis(100);

/// What a download of several repos would fetch (from the hub's listing) and what the cache
/// already has.
#[derive(Clone, Debug)]
pub struct DownloadPlan {
    pub repos: Vec<RepoListing>,
    /// Every file's size.
    pub total_bytes: u64,
    /// Bytes already in the cache: whole blobs and kept partial files.
    pub present_bytes: u64,
}

impl DownloadPlan {
    pub fn remaining_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.present_bytes)
    }
}

fn names(repos: &[(&str, RepoKind)]) -> String {
    repos.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", ")
}

/// Asks the hub what `repos` hold (one request each) and compares with the cache.
pub fn plan(cfg: &HubConfig, repos: &[(&str, RepoKind)]) -> Result<DownloadPlan, DownloadError> {
    let agent = cfg.agent();
    let mut listings = Vec::new();
    for (repo, kind) in repos {
        let l = list(cfg, &agent, repo, *kind).map_err(|e| match e {
            // Offline: name every repo asked for, so the message lists all there is to copy.
            DownloadError::Offline {
                endpoint,
                cache_dir,
                detail,
                ..
            } => DownloadError::Offline {
                endpoint,
                repos: names(repos),
                cache_dir,
                detail,
            },
            e => e,
        })?;
        listings.push(l);
    }
    let (mut total, mut present) = (0, 0);
    for l in &listings {
        let cache = RepoCache::new(&cfg.cache_dir, &l.repo);
        for f in &l.files {
            total += f.size;
            present += cache.bytes_present(&f.hash, f.size);
        }
    }
    Ok(DownloadPlan {
        repos: listings,
        total_bytes: total,
        present_bytes: present,
    })
}

/// The snapshots of `repos` (in order), downloading what the cache lacks. `cancel` stops it
/// between chunks (the partial files are kept); `progress` hears about it ~10× a second.
pub fn ensure(
    cfg: &HubConfig,
    repos: &[(&str, RepoKind)],
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<Vec<PathBuf>, DownloadError> {
    let missing: Vec<(&str, RepoKind)> = repos
        .iter()
        .copied()
        .filter(|(r, k)| complete_snapshot(&cfg.cache_dir, r, *k).is_none())
        .collect();
    if !missing.is_empty() {
        let p = plan(cfg, &missing)?;
        download(cfg, &p, cancel, progress)?;
    }
    repos
        .iter()
        .map(|(r, k)| {
            complete_snapshot(&cfg.cache_dir, r, *k).ok_or_else(|| DownloadError::BadListing {
                repo: r.to_string(),
                url: cfg.endpoint.clone(),
                detail: "the downloaded snapshot is not complete".into(),
            })
        })
        .collect()
}

/// Fetches every file of `plan` the cache lacks, after checking the disk has room.
pub fn download(
    cfg: &HubConfig,
    plan: &DownloadPlan,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<(), DownloadError> {
    let repos = plan
        .repos
        .iter()
        .map(|l| l.repo.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    check_disk(cfg, &repos, plan.remaining_bytes())?;
    let agent = cfg.agent();
    let mut written = 0u64;
    let mut done_before = 0u64; // bytes of the files finished so far
    let mut meter = SpeedMeter::new(Duration::from_secs(5));
    let mut last_report: Option<Instant> = None;
    for l in &plan.repos {
        let cache = RepoCache::new(&cfg.cache_dir, &l.repo);
        for f in &l.files {
            let mut job = FileJob {
                cfg,
                agent: &agent,
                repo: &l.repo,
                commit: &l.commit,
                cache: &cache,
                file: f,
                cancel,
                written: &mut written,
            };
            let mut report = |file_done: u64, force: bool, restart_meter: bool| {
                if restart_meter {
                    meter.reset();
                }
                let now = Instant::now();
                if !force && last_report.is_some_and(|t| now.duration_since(t) < REPORT_EVERY) {
                    return;
                }
                last_report = Some(now);
                let done = done_before + file_done;
                let speed = meter.record(now, done);
                progress(&DownloadProgress {
                    repo: l.repo.clone(),
                    file: f.name.clone(),
                    file_done,
                    file_total: f.size,
                    done,
                    total: plan.total_bytes,
                    bytes_per_sec: speed,
                    eta_secs: eta(plan.total_bytes.saturating_sub(done), speed),
                });
            };
            // The prefix kept from before arrives at once: no measure of speed.
            let mut first = true;
            let r = fetch(&mut job, &mut |file_done| {
                report(file_done, false, std::mem::take(&mut first))
            });
            match r {
                Ok(()) => report(f.size, true, false),
                Err(DownloadError::DiskFull {
                    repo,
                    file,
                    dir,
                    kept,
                    ..
                }) => {
                    let missing = plan.total_bytes.saturating_sub(done_before + kept);
                    return Err(DownloadError::DiskFull {
                        repo,
                        file,
                        dir,
                        kept: done_before + kept,
                        missing,
                    });
                }
                Err(e) => return Err(e),
            }
            done_before += f.size;
        }
        // Every file verified: link the snapshot, then point refs/main at it.
        for f in &l.files {
            cache.link(&l.commit, &f.name, &f.hash).map_err(|e| {
                DownloadError::io(
                    format!(
                        "linking {} into {}",
                        f.name,
                        cache.snapshot(&l.commit).display()
                    ),
                    e,
                )
            })?;
        }
        cache.set_main(&l.commit).map_err(|e| {
            DownloadError::io(
                format!("writing refs/main of {}", cache.root().display()),
                e,
            )
        })?;
    }
    Ok(())
}

fn check_disk(cfg: &HubConfig, repos: &str, needed: u64) -> Result<(), DownloadError> {
    #[allow(unused_mut)]
    let mut free = free_bytes(&cfg.cache_dir);
    #[cfg(feature = "test-hooks")]
    if let Some(f) = cfg.fake_free_bytes {
        free = Some(f);
    }
    match free {
        Some(free) if needed > 0 && free < needed.saturating_add(DISK_MARGIN) => {
            Err(DownloadError::NotEnoughDisk {
                repos: repos.into(),
                dir: cfg.cache_dir.clone(),
                needed,
                free,
            })
        }
        _ => Ok(()),
    }
}
