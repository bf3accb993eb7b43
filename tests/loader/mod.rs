//! The PDF loader: discovery, smart_resize and pixels against the reference processor, broken
//! input, render worker crashes and timeouts, ordering, resume, cancel, staging.
//! Fixtures: tests/fixtures/loader/ and assets/samples/, made by tools/gen_loader_fixtures.py.

use pagesight::loader::env_vars::WORKER_FAULT;
use pagesight::loader::pdfium::PdfRenderer;
use pagesight::loader::LoaderSettings;
use pagesight::loader::{
    discover, pack_batch, Loader, LoaderEvent, LoaderOptions, PageJobFile, RenderedPage,
    StagingRing,
};
use pagesight::model::preprocess::{patchify_into, PreprocessConfig};
use pagesight::model::resize::resize_bicubic_rgb;
use pagesight::model::smart_resize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(p: &str) -> PathBuf {
    repo().join("tests/fixtures/loader").join(p)
}

fn asset(name: &str) -> PathBuf {
    repo().join("assets/samples").join(name)
}

const SAMPLES: [(&str, u32); 4] = [
    ("coral-reef-bleaching.pdf", 3),
    ("graphene-thermal-conductivity.pdf", 1),
    ("hanseatic-trade-routes.pdf", 2),
    ("sparse-attention-transformers.pdf", 2),
];

fn settings(workers: usize) -> LoaderSettings {
    LoaderSettings {
        workers,
        prefetch: 4,
        worker_exe: Some(PathBuf::from(env!("CARGO_BIN_EXE_pagesight"))),
        ..LoaderSettings::default()
    }
}

fn jobs(paths: &[PathBuf]) -> Vec<PageJobFile> {
    PageJobFile::whole_files(paths.iter().map(PathBuf::as_path))
}

/// What happened to each file, by file index.
#[derive(Debug, Default)]
struct Outcome {
    opened: Option<u32>,
    pages: Vec<RenderedPage>,
    failed: Option<(Option<u32>, String)>,
    finished: bool,
}

/// Drains a loader, checking the per-file event order on the way.
fn collect(loader: &Loader) -> BTreeMap<usize, Outcome> {
    let mut out: BTreeMap<usize, Outcome> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Ok(ev) = loader.events().recv_deadline(deadline) {
        match ev {
            LoaderEvent::FileOpened {
                file_index,
                page_count,
            } => {
                let o = out.entry(file_index).or_default();
                assert!(
                    o.opened.is_none() && o.pages.is_empty(),
                    "file {file_index} opened twice"
                );
                o.opened = Some(page_count);
            }
            LoaderEvent::Page(p) => {
                let o = out.entry(p.file_index).or_default();
                assert!(o.opened.is_some(), "page before FileOpened");
                assert!(
                    o.failed.is_none() && !o.finished,
                    "page after the file's end"
                );
                if let Some(prev) = o.pages.last() {
                    assert_eq!(p.page, prev.page + 1, "pages out of order");
                }
                o.pages.push(p);
            }
            LoaderEvent::FileFailed {
                file_index,
                page,
                reason,
            } => {
                let o = out.entry(file_index).or_default();
                assert!(
                    o.failed.is_none() && !o.finished,
                    "file {file_index} ended twice"
                );
                o.failed = Some((page, reason));
            }
            LoaderEvent::FileFinished { file_index } => {
                let o = out.entry(file_index).or_default();
                assert!(
                    o.failed.is_none() && !o.finished,
                    "file {file_index} ended twice"
                );
                o.finished = true;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

#[test]
fn discovery_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("a/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".hidden")).unwrap();
    std::fs::write(root.join("a/One.PDF"), b"%PDF-1.4 one").unwrap();
    std::fs::write(root.join("a/deeper/two.pdf"), b"%PDF-1.4 two").unwrap();
    std::fs::write(root.join("a/.secret.pdf"), b"%PDF-1.4 hidden file").unwrap();
    std::fs::write(root.join(".hidden/three.pdf"), b"%PDF-1.4 hidden dir").unwrap();
    std::fs::write(root.join("notes.txt"), b"not a pdf").unwrap();
    std::fs::write(root.join("pdf"), b"no extension").unwrap();
    // A loop back to the root, a second link to a folder already walked, a dangling link.
    std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("a/deeper"), root.join("again")).unwrap();
    std::os::unix::fs::symlink(root.join("missing.pdf"), root.join("dangling.pdf")).unwrap();

    let d = discover(root).unwrap();
    let names: Vec<String> = d
        .files
        .iter()
        .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["a/One.PDF", "a/deeper/two.pdf"],
        "errors: {:?}",
        d.errors
    );
    assert_eq!(d.files[0].size, 12);
    assert_eq!(d.files[0].hash, *blake3::hash(b"%PDF-1.4 one").as_bytes());
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    assert!(d.errors[0].0.ends_with("dangling.pdf"));

    // Renaming or moving keeps the hash; changing the content changes it.
    let before = d.files[1].hash;
    std::fs::rename(root.join("a/deeper/two.pdf"), root.join("a/renamed.pdf")).unwrap();
    let d2 = discover(root).unwrap();
    let moved = d2
        .files
        .iter()
        .find(|f| f.path.ends_with("renamed.pdf"))
        .unwrap();
    assert_eq!(moved.hash, before);
    std::fs::write(root.join("a/renamed.pdf"), b"%PDF-1.4 two, edited").unwrap();
    let d3 = discover(root).unwrap();
    assert_ne!(
        d3.files
            .iter()
            .find(|f| f.path.ends_with("renamed.pdf"))
            .unwrap()
            .hash,
        before
    );

    // A single file is a valid root; a missing root is an error that names it.
    assert_eq!(discover(&root.join("a/One.PDF")).unwrap().files.len(), 1);
    let e = discover(&root.join("nope")).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------------

#[test]
fn pipeline_renders_all_pages_in_order_with_text() {
    let paths: Vec<PathBuf> = SAMPLES.iter().map(|(n, _)| asset(n)).collect();
    let cfg = PreprocessConfig::default();
    let loader = Loader::start(jobs(&paths), &settings(2), &cfg).unwrap();
    let out = collect(&loader);
    for (i, (name, count)) in SAMPLES.iter().enumerate() {
        let o = &out[&i];
        assert!(o.finished && o.failed.is_none(), "{name}: {o:?}");
        assert_eq!(o.opened, Some(*count), "{name}");
        assert_eq!(
            o.pages.iter().map(|p| p.page).collect::<Vec<_>>(),
            (1..=*count).collect::<Vec<_>>()
        );
        for p in &o.pages {
            assert_eq!((p.width, p.height), (644, 896), "A4 at the default budget");
            assert_eq!(p.rgb.len(), 644 * 896 * 3);
            assert_eq!(p.page_count, *count);
            assert!(p.render_secs > 0.0 && p.resize_secs > 0.0);
        }
    }
    let text = |f: usize, p: usize| out[&f].pages[p].text.clone();
    assert!(text(0, 0).contains("zooxanthellae"), "{}", text(0, 0));
    assert!(text(0, 1).contains("Bleaching survey by site"));
    assert!(text(2, 0).contains("Novgorod"));
    assert!(text(3, 1).contains("Figure 1: Speedup"));
    // Drawn figures survive: the attention paper's bar chart has saturated blue pixels.
    let fig = &out[&3].pages[1].rgb;
    let blue = fig
        .chunks_exact(3)
        .filter(|px| px[2] > 150 && px[0] < 90)
        .count();
    assert!(blue > 500, "only {blue} blue pixels in the bar chart page");
}

#[test]
fn resume_starts_at_the_given_page() {
    let cfg = PreprocessConfig::default();
    let jobs = vec![
        PageJobFile {
            file_index: 7,
            path: asset("coral-reef-bleaching.pdf"),
            first_page: 2,
        },
        PageJobFile {
            file_index: 9,
            path: asset("hanseatic-trade-routes.pdf"),
            first_page: 5,
        },
    ];
    let loader = Loader::start(jobs, &settings(1), &cfg).unwrap();
    let out = collect(&loader);
    assert_eq!(
        out[&7].pages.iter().map(|p| p.page).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(out[&7].finished);
    // Past the end: opened, nothing to render, finished.
    assert_eq!(out[&9].opened, Some(2));
    assert!(out[&9].pages.is_empty() && out[&9].finished);
}

#[test]
fn broken_pdfs_fail_with_clear_reasons_and_the_run_goes_on() {
    let cfg = PreprocessConfig::default();
    let names = [
        "empty",
        "not-a-pdf",
        "truncated",
        "encrypted",
        "zero-pages",
        "banner",
        "huge-page",
    ];
    let mut paths: Vec<PathBuf> = names
        .iter()
        .map(|n| fixture(&format!("broken/{n}.pdf")))
        .collect();
    paths.push(asset("graphene-thermal-conductivity.pdf"));
    let s = LoaderSettings {
        max_render_pixels: 4_000_000,
        ..settings(2)
    };
    let loader = Loader::start(jobs(&paths), &s, &cfg).unwrap();
    let out = collect(&loader);
    let reason = |i: usize| {
        out[&i]
            .failed
            .clone()
            .unwrap_or_else(|| panic!("{} did not fail: {:?}", names[i], out[&i]))
    };
    let expect = [
        (0, None, "empty"),
        (1, None, "not a PDF"),
        (2, None, "damaged PDF"),
        (3, None, "encrypted"),
        (4, None, "no pages"),
        (5, Some(1), "aspect ratio"),
    ];
    for (i, page, text) in expect {
        let (p, r) = reason(i);
        assert_eq!(p, page, "{}: {r}", names[i]);
        assert!(r.contains(text), "{}: '{r}' lacks '{text}'", names[i]);
    }
    // A huge page box renders at reduced resolution instead of failing.
    let huge = &out[&6];
    assert!(huge.finished, "{huge:?}");
    assert_eq!(huge.pages.len(), 1);
    assert!(out[&7].finished && out[&7].pages.len() == 1);
}

fn copy_sample_as(dir: &Path, name: &str, sample: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(asset(sample), &p).unwrap();
    p
}

#[test]
fn crashing_worker_fails_only_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![
        copy_sample_as(dir.path(), "before.pdf", "hanseatic-trade-routes.pdf"),
        copy_sample_as(dir.path(), "crash-me.pdf", "coral-reef-bleaching.pdf"),
        copy_sample_as(dir.path(), "after.pdf", "sparse-attention-transformers.pdf"),
    ];
    let opts = LoaderOptions {
        worker_env: vec![(WORKER_FAULT.into(), "abort:crash-me".into())],
    };
    let loader = Loader::start_with(
        jobs(&paths),
        &settings(2),
        &PreprocessConfig::default(),
        opts,
    )
    .unwrap();
    let out = collect(&loader);
    assert!(
        out[&0].finished && out[&0].pages.len() == 2,
        "{:?}",
        out[&0]
    );
    assert!(
        out[&2].finished && out[&2].pages.len() == 2,
        "{:?}",
        out[&2]
    );
    let (page, reason) = out[&1].failed.clone().expect("crash-me fails");
    assert_eq!(page, Some(1));
    assert!(
        reason.contains("render worker crashed on page 1") && reason.contains("SIGABRT"),
        "{reason}"
    );
}

/// The memory cap of the loader settings reaches the workers: under a cap far below what a page
/// needs the page fails (PDFium's allocation fails, or the worker dies and the reason names the
/// cap); the same file renders without it.
#[test]
fn worker_memory_setting_caps_the_render_workers() {
    let path = asset("graphene-thermal-conductivity.pdf");
    let capped = LoaderSettings {
        worker_memory_mb: Some(1),
        ..settings(1)
    };
    let loader = Loader::start(
        jobs(std::slice::from_ref(&path)),
        &capped,
        &PreprocessConfig::default(),
    )
    .unwrap();
    let out = collect(&loader);
    let (page, reason) = out[&0]
        .failed
        .clone()
        .expect("a 1 MB worker cannot render a page");
    assert_eq!(page, Some(1), "{reason}");
    assert!(out[&0].pages.is_empty());
    if reason.contains("render worker crashed") {
        assert!(reason.contains("the 1 MB of memory"), "{reason}");
    }
    let loader = Loader::start(jobs(&[path]), &settings(1), &PreprocessConfig::default()).unwrap();
    let out = collect(&loader);
    assert!(
        out[&0].finished && out[&0].pages.len() == 1,
        "{:?}",
        out[&0]
    );
}

/// Waits until a worker is busy on the page that hangs, then SIGKILLs it.
#[test]
fn worker_killed_mid_page_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![
        copy_sample_as(dir.path(), "hang-here.pdf", "coral-reef-bleaching.pdf"),
        copy_sample_as(dir.path(), "fine.pdf", "graphene-thermal-conductivity.pdf"),
    ];
    let opts = LoaderOptions {
        worker_env: vec![(WORKER_FAULT.into(), "hang:hang-here".into())],
    };
    let s = LoaderSettings {
        page_timeout_secs: 60.0,
        ..settings(1)
    };
    let loader = Loader::start_with(jobs(&paths), &s, &PreprocessConfig::default(), opts).unwrap();
    // The page count arrives first; then the only worker is busy rendering page 1, forever.
    match loader
        .events()
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
    {
        LoaderEvent::FileOpened {
            file_index: 0,
            page_count: 3,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    let marker = dir.path().join("hang-here.pdf.hanging");
    let t = Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the worker never started page 1"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = loader.worker_pids()[0];
    assert!(pid > 0);
    // SAFETY: kill takes no pointers and touches no memory of ours; `pid` is the loader's live
    // render worker (a child of this process, not yet reaped), so no other process is hit.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let t = Instant::now();
    let out = collect(&loader);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "recovery took {:?}",
        t.elapsed()
    );
    let (page, reason) = out[&0].failed.clone().expect("hang-here fails");
    assert_eq!(page, Some(1));
    assert!(
        reason.contains("render worker crashed on page 1") && reason.contains("SIGKILL"),
        "{reason}"
    );
    // The replacement worker did the next file.
    assert!(
        out[&1].finished && out[&1].pages.len() == 1,
        "{:?}",
        out[&1]
    );
}

#[test]
fn hanging_worker_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let paths = vec![
        copy_sample_as(dir.path(), "slow-hang.pdf", "hanseatic-trade-routes.pdf"),
        copy_sample_as(dir.path(), "quick.pdf", "graphene-thermal-conductivity.pdf"),
    ];
    let opts = LoaderOptions {
        worker_env: vec![(WORKER_FAULT.into(), "hang:slow-hang".into())],
    };
    // Short, but not so short that the good file times out on a busy 2-core machine.
    let s = LoaderSettings {
        page_timeout_secs: 1.5,
        ..settings(2)
    };
    let loader = Loader::start_with(jobs(&paths), &s, &PreprocessConfig::default(), opts).unwrap();
    let out = collect(&loader);
    let (page, reason) = out[&0].failed.clone().expect("slow-hang fails");
    assert_eq!(page, Some(1));
    assert!(
        reason.contains("timed out after 1.5 s on page 1"),
        "{reason}"
    );
    assert!(out[&1].finished, "{:?}", out[&1]);
}

#[test]
fn cancel_stops_promptly_and_kills_workers() {
    let paths: Vec<PathBuf> = (0..6).map(|i| asset(SAMPLES[i % 4].0)).collect();
    let loader = Loader::start(
        jobs(&paths),
        &LoaderSettings {
            prefetch: 1,
            ..settings(2)
        },
        &PreprocessConfig::default(),
    )
    .unwrap();
    let pids = loader.worker_pids();
    assert_eq!(pids.len(), 2);
    assert!(loader.recv().is_some());
    let t = Instant::now();
    loader.cancel();
    while loader.events().recv_timeout(Duration::from_secs(5)).is_ok() {}
    drop(loader);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "cancel took {:?}",
        t.elapsed()
    );
    for pid in pids {
        // Killed and reaped: the pid names no process any more.
        assert_eq!(
            // SAFETY: signal 0 sends nothing and kill takes no pointers: it only asks whether
            // the process exists.
            unsafe { libc::kill(pid as i32, 0) },
            -1,
            "worker {pid} still exists"
        );
    }
}

#[test]
fn pack_batch_writes_pages_back_to_back() {
    let cfg = PreprocessConfig::default().with_max_visual_tokens(64);
    let paths = vec![asset("sparse-attention-transformers.pdf")];
    let loader = Loader::start(jobs(&paths), &settings(1), &cfg).unwrap();
    let pages: Vec<RenderedPage> = collect(&loader).remove(&0).unwrap().pages;
    assert_eq!(pages.len(), 2);
    let mut ring = StagingRing::host(2, &cfg, 2).unwrap();
    let (slot, buf) = ring.next_buffer();
    assert_eq!(slot, 0);
    let batch = pack_batch(&pages, &cfg, buf).unwrap();
    let per_page = cfg.num_patches(pages[0].height, pages[0].width) * cfg.patch_dim();
    assert!(cfg.num_patches(pages[0].height, pages[0].width) <= 64 * 4);
    assert_eq!(batch.pixel_values.len(), 2 * per_page);
    assert_eq!(
        batch.grid_thw,
        vec![cfg.grid_thw(pages[0].height, pages[0].width); 2]
    );
    for (i, p) in pages.iter().enumerate() {
        let mut one = vec![0.0f32; per_page];
        patchify_into(&p.rgb, p.height, p.width, &cfg, &mut one).unwrap();
        assert_eq!(
            &batch.pixel_values[i * per_page..(i + 1) * per_page],
            &one[..]
        );
    }
    assert_eq!(ring.next_buffer().0, 1);
    assert_eq!(ring.next_buffer().0, 0);
    let mut small = vec![0.0f32; 10];
    assert!(pack_batch(&pages, &cfg, &mut small)
        .unwrap_err()
        .to_string()
        .contains("staging buffer"));
}

mod reference;
