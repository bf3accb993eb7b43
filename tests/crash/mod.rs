//! Crash consistency of the real `pagesight ingest` (issue 8), through `bench::crash`: the same
//! harness `pagesight bench crash` runs for the README figures. Every figure is printed.
//! `PAGESIGHT_CRASH_TRIALS` overrides the number of SIGKILL trials (default 50).

use pagesight::devtools::crash::{
    concurrent, default_samples, disk_full, fast_spec, kill, make_corpus, render_kill,
    render_setups, CrashReport,
};
use std::path::Path;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pagesight"))
}

/// A corpus of `copies` × the 4 sample PDFs (8 pages per copy) in `work`.
fn corpus(work: &Path, copies: usize) -> std::path::PathBuf {
    let c = work.join("corpus");
    make_corpus(&default_samples(), copies, &c).unwrap();
    c
}

fn show(r: &CrashReport) {
    println!("{}", r.summary());
    let p = r.problems();
    assert!(p.is_empty(), "{} problems:\n{}", p.len(), p.join("\n"));
}

#[test]
fn sigkill_anywhere_in_a_real_ingest_loses_nothing_and_resumes_equal() {
    let trials: usize = std::env::var("PAGESIGHT_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().unwrap();
    // 16 pages, a commit every 2: 9 commits in ~1.5 s keep 50 trials within the CI budget.
    let spec = fast_spec(exe(), &corpus(tmp.path(), 2), 2);
    let reference = kill::Reference::build(&spec, tmp.path()).unwrap();
    assert!(reference.commits >= 9, "{} commits", reference.commits);
    let k = kill::kill_trials(&spec, tmp.path(), &reference, trials, 1).unwrap();
    let r = CrashReport {
        kills: Some(k.clone()),
        ..Default::default()
    };
    show(&r);
    assert_eq!((k.pages_lost, k.duplicates), (0, 0));
    assert_eq!(k.resumed_equal, trials);
    // The harness must really have landed kills inside commits for the figures to mean much.
    assert!(
        k.inside_commit > 0 && k.between_commits + k.before_first_commit > 0,
        "{k:?}"
    );
}

#[test]
fn render_worker_killed_mid_render_fails_only_its_file_and_a_rerun_recovers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let setups = render_setups(exe(), &corpus(tmp.path(), 2), 2, tmp.path()).unwrap();
    let f = render_kill::render_kill_trials(&setups, tmp.path(), 8, 1).unwrap();
    show(&CrashReport {
        render_kills: Some(f.clone()),
        ..Default::default()
    });
    assert_eq!(f.ingests_finished, 8);
    assert_eq!(f.reruns_equal, 8);
    assert_eq!(f.other_pages_lost, 0);
    assert!(f.mid_render > 0, "no kill landed mid-render: {f:?}");
    assert_eq!(f.mid_render + f.idle, 8);
    // The worker was rendering a page, or opening the file to count its pages.
    assert!(
        f.reasons.iter().all(|r| r.contains("SIGKILL")
            && (r.contains("on page") || r.contains("while opening the file"))),
        "{f:?}"
    );
}

#[test]
fn disk_full_during_commit_is_a_clean_error_and_keeps_the_last_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = fast_spec(exe(), &corpus(tmp.path(), 2), 2);
    let reference = kill::Reference::build(&spec, tmp.path()).unwrap();
    let d = disk_full::disk_full_cases(&spec, tmp.path(), &reference, 4).unwrap();
    show(&CrashReport {
        disk_full: Some(d.clone()),
        ..Default::default()
    });
    assert_eq!(
        (d.clean_errors, d.previous_commit_intact, d.recovered),
        (d.cases, d.cases, d.cases)
    );
    assert!(d.example_message.contains("disk is full"), "{d:?}");
}

#[test]
fn searches_during_a_real_ingest_see_whole_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = fast_spec(exe(), &corpus(tmp.path(), 4), 2);
    let c = concurrent::concurrent_searches(&spec, tmp.path()).unwrap();
    show(&CrashReport {
        concurrency: Some(c.clone()),
        ..Default::default()
    });
    assert!(c.cli_searches + c.opens > 10, "{c:?}");
    assert!(
        c.states_seen > 2,
        "searches saw too few commits to mean much: {c:?}"
    );
}

#[test]
fn commit_trace_tells_where_a_kill_landed_and_what_may_be_committed() {
    use pagesight::devtools::crash::child::{KillPoint, Trace};
    let full = "commit-begin 1 0\nstep commit text (tantivy; fsyncs inside)\nstep write MANIFEST.tmp\nstep fsync MANIFEST.tmp\nstep rename MANIFEST\nstep fsync index dir\ncommit-end 1 0\ncommit-begin 2 2\nstep write segment\nstep fsync segment\nstep fsync segments dir\nstep commit text (tantivy; fsyncs inside)\nstep write MANIFEST.tmp\nstep fsync MANIFEST.tmp\nstep rename MANIFEST\nstep fsync index dir\ncommit-end 2 2\n";
    let tmp = tempfile::tempdir().unwrap();
    let at = |n: usize| {
        let p = tmp.path().join(format!("t{n}"));
        let text: String = full.lines().take(n).map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, text).unwrap();
        Trace::read(&p).unwrap()
    };
    assert_eq!(at(0).kill_point(), KillPoint::BeforeFirstCommit);
    assert_eq!(at(0).allowed_after_kill(), vec![None]);
    // Killed in the first commit before its manifest rename: no index yet.
    assert_eq!(at(3).allowed_after_kill(), vec![None]);
    assert!(at(2).kill_point().in_fsync());
    assert_eq!(at(7).kill_point(), KillPoint::BetweenCommits);
    assert_eq!(at(7).allowed_after_kill(), vec![Some((1, 0))]);
    let in_segment_fsync = at(10);
    assert!(in_segment_fsync.kill_point().in_fsync());
    assert_eq!(in_segment_fsync.allowed_after_kill(), vec![Some((1, 0))]);
    assert!(!at(9).kill_point().in_fsync(), "writing, not syncing");
    // During the rename either state; once it is done only the new one.
    assert_eq!(
        at(15).allowed_after_kill(),
        vec![Some((1, 0)), Some((2, 2))]
    );
    assert_eq!(at(16).allowed_after_kill(), vec![Some((2, 2))]);
    assert_eq!(at(17).last_end(), Some((2, 2)));
    assert_eq!(at(17).commits_ended(), 2);
    std::fs::write(tmp.path().join("bad"), "commit-begin x\n").unwrap();
    assert!(Trace::read(&tmp.path().join("bad")).is_err());
}

#[test]
fn disk_full_errnos_read_as_disk_full_naming_the_file() {
    use pagesight::index::format::{disk_full_in_message, io_err};
    use pagesight::index::IndexError;
    let p = Path::new("/ix/segments/seg-0000000003.psv");
    for errno in [libc::ENOSPC, libc::EFBIG, libc::EDQUOT] {
        let e = io_err(p)(std::io::Error::from_raw_os_error(errno));
        assert!(matches!(e, IndexError::DiskFull { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("disk is full")
                && msg.contains("free some disk space")
                && msg.contains(p.to_str().unwrap()),
            "{msg}"
        );
        assert!(!msg.contains("os error"), "{msg}");
    }
    let other = io_err(p)(std::io::Error::from_raw_os_error(libc::EIO));
    assert!(matches!(other, IndexError::Io { .. }));
    // tantivy reports I/O errors as text.
    let tantivy_like = format!(
        "An IO error occurred: '{}'",
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    );
    assert!(disk_full_in_message(&tantivy_like).is_some());
    assert!(disk_full_in_message("Lock busy").is_none());
}
