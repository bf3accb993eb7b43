//! Thumbnails come from a render worker process: a PDF that crashes or hangs PDFium fails its own
//! thumbnail with the reason, and the next thumbnails keep coming.

use crate::engine::samples_dir;
use pagesight::engine::{Command, EngineHandle, EngineOptions, Event};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Thumbnail `id` of page 1 of `file`: the image's size, or the error's text.
fn thumbnail(engine: &EngineHandle, id: u64, file: &Path) -> Result<(u32, u32), String> {
    engine.send(Command::Thumbnail {
        id,
        file: file.to_path_buf(),
        page: 1,
        max_side: 128,
    });
    loop {
        match engine
            .events
            .recv_timeout(Duration::from_secs(60))
            .expect("every thumbnail is answered")
        {
            Event::Thumbnail {
                id: i,
                width,
                height,
                rgba,
                ..
            } if i == id => {
                assert_eq!(rgba.len(), (width * height * 4) as usize);
                return Ok((width, height));
            }
            Event::Error {
                request_id: Some(i),
                message,
                ..
            } if i == id => return Err(message),
            _ => {}
        }
    }
}

#[test]
fn a_pdf_that_crashes_or_hangs_pdfium_fails_its_thumbnail_and_the_next_ones_come() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_dir(samples_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pdf"))
        .unwrap();
    let copy = |name: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::copy(&sample, &p).unwrap();
        p
    };
    let (fine, crashes, hangs) = (copy("fine.pdf"), copy("crashes.pdf"), copy("hangs.pdf"));
    let engine = EngineHandle::spawn_with(EngineOptions {
        worker_exe: Some(env!("CARGO_BIN_EXE_pagesight").into()),
        worker_env: vec![(
            pagesight::loader::env_vars::WORKER_FAULT.into(),
            "abort:crashes,hang:hangs".into(),
        )],
        thumbnail_timeout: Duration::from_secs(3),
    });
    let (w, h) = thumbnail(&engine, 1, &fine).expect("a plain page renders");
    assert_eq!(w.max(h), 128);

    let e = thumbnail(&engine, 2, &crashes).expect_err("the crash fails the thumbnail");
    assert!(
        e.contains("crashes.pdf") && e.contains("SIGABRT"),
        "names the file and the crash: {e}"
    );
    assert_eq!(thumbnail(&engine, 3, &fine), Ok((w, h)), "after a crash");

    let t = Instant::now();
    let e = thumbnail(&engine, 4, &hangs).expect_err("the hang fails the thumbnail");
    assert!(
        e.contains("hangs.pdf") && e.contains("did not render within 3 s"),
        "names the file and the timeout: {e}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(
        dir.path().join("hangs.pdf.hanging").exists(),
        "the hang was the injected one"
    );
    assert_eq!(thumbnail(&engine, 5, &fine), Ok((w, h)), "after a hang");
}
