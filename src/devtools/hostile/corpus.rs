//! The hostile-PDF corpus: a seeded mix of valid documents and everything a thesis folder may
//! hold besides — truncated downloads, flipped bytes, password-protected files, page boxes of
//! metres, deeply nested structures, enormous images, HTML saved as `.pdf`, empty files, named
//! pipes, character devices and folders called `x.pdf`, unreadable files and symlink loops.
//!
//! Every entry says what a correct ingest does with it, so the harness can check the outcome
//! rather than just count it.

use super::pdf::{document, escape_string, Encryption, ImageSpec, PageSpec, PdfWriter};
use anyhow::{Context, Result};
use pagesight_index::synthetic::Rng;
use pagesight_loader::env_vars::READ_FAULT;
use pagesight_loader::env_vars::WORKER_FAULT;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a correct ingest does with a corpus entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Expect {
    /// Every page indexed.
    Ingested,
    /// Reported failed, the reason containing this text.
    Fails(&'static str),
    /// A byte-for-byte copy of this other entry: indexed once, under the other path.
    DuplicateOf(&'static str),
    /// Damaged on purpose at a random place: indexed (readers repair a lot) or failed with a
    /// reason; either is correct, a crash or a hang is not.
    Either,
}

/// One generated file (or pipe, device, link, folder) in the corpus.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Relative to the corpus folder: the path the ingest reports it under.
    pub path: PathBuf,
    /// Which hostile case it is (e.g. "truncated", "encrypted-user-password").
    pub kind: &'static str,
    pub expect: Expect,
}

/// A generated corpus: its entries and the environment the ingest must run with (the documented
/// fault-injection hooks for the unreadable file and the crashing / hanging render workers).
#[derive(Clone, Debug)]
pub struct Corpus {
    pub root: PathBuf,
    pub entries: Vec<Entry>,
    pub env: Vec<(OsString, OsString)>,
}

/// Valid documents the damaged variants start from: the sample PDFs (made by another writer)
/// and two of our own.
fn bases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "coral",
            include_bytes!("../../../assets/samples/coral-reef-bleaching.pdf").to_vec(),
        ),
        (
            "hanseatic",
            include_bytes!("../../../assets/samples/hanseatic-trade-routes.pdf").to_vec(),
        ),
        ("letter", document(&[text_page(0), text_page(1)], None)),
        ("note", document(&[text_page(2)], None)),
    ]
}

fn text_page(n: u32) -> PageSpec {
    PageSpec::a4(vec![
        format!("Generated page {n} of the hostile corpus"),
        "Sediment cores from the Baltic record the medieval warm period.".into(),
        format!("Sample {n}: (parentheses) and a backslash \\ survive escaping."),
    ])
}

struct Gen {
    root: PathBuf,
    entries: Vec<Entry>,
    rng: Rng,
}

impl Gen {
    fn write(&mut self, rel: &str, bytes: &[u8], kind: &'static str, expect: Expect) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        self.note(rel, kind, expect);
        Ok(())
    }

    fn note(&mut self, rel: &str, kind: &'static str, expect: Expect) {
        self.entries.push(Entry {
            path: PathBuf::from(rel),
            kind,
            expect,
        });
    }

    fn symlink(
        &mut self,
        target: &str,
        rel: &str,
        kind: &'static str,
        expect: Expect,
    ) -> Result<()> {
        let link = self.root.join(rel);
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("cannot create symlink {}", link.display()))?;
        self.note(rel, kind, expect);
        Ok(())
    }
}

/// Writes the corpus into `root` (created; must not exist or be empty). `count` is the number of
/// damaged variants (truncations and byte flips, split evenly); the fixed cases come on top.
pub fn generate(root: &Path, count: usize, seed: u64) -> Result<Corpus> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    if std::fs::read_dir(root)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty; the hostile corpus needs a folder of its own",
            root.display()
        );
    }
    let mut g = Gen {
        root: root.to_path_buf(),
        entries: Vec::new(),
        rng: Rng::new(seed),
    };
    let bases = bases();
    for (name, bytes) in &bases {
        g.write(
            &format!("valid/{name}.pdf"),
            bytes,
            "valid",
            Expect::Ingested,
        )?;
    }
    damaged_variants(&mut g, &bases, count)?;
    encrypted(&mut g)?;
    page_boxes(&mut g)?;
    structure(&mut g)?;
    images(&mut g)?;
    not_pdfs(&mut g)?;
    special_files(&mut g)?;
    // The same paper saved twice.
    g.write(
        "valid/saved-again-note.pdf",
        &bases[3].1,
        "duplicate",
        Expect::DuplicateOf("valid/note.pdf"),
    )?;
    // Valid files that the documented fault hooks break: a read error, a worker crash, a hang
    // (each with its own content, so none is a duplicate of another).
    for (n, (name, kind, why)) in [
        ("unreadable-injected.pdf", "read-error", "cannot read"),
        (
            "worker-crash-injected.pdf",
            "worker-crash",
            "render worker crashed",
        ),
        ("worker-hang-injected.pdf", "worker-hang", "timed out"),
    ]
    .into_iter()
    .enumerate()
    {
        let doc = document(&[text_page(10 + n as u32)], None);
        g.write(name, &doc, kind, Expect::Fails(why))?;
    }
    let env = vec![
        (READ_FAULT.into(), "unreadable-injected".into()),
        (
            WORKER_FAULT.into(),
            "abort:worker-crash-injected,hang:worker-hang-injected".into(),
        ),
    ];
    Ok(Corpus {
        root: root.to_path_buf(),
        entries: g.entries,
        env,
    })
}

/// Truncations at seeded offsets spread over the whole file (a failed download stops anywhere),
/// and random byte changes (bit rot, a bad copy).
fn damaged_variants(g: &mut Gen, bases: &[(&'static str, Vec<u8>)], count: usize) -> Result<()> {
    let truncations = count / 2;
    for i in 0..truncations {
        let (name, bytes) = &bases[i % bases.len()];
        // Stratified over the file, so every region (header, objects, xref, trailer) is hit.
        let per_base = truncations.div_ceil(bases.len()).max(1);
        let stratum = (i / bases.len()) as u64;
        let width = (bytes.len() as u64).div_ceil(per_base as u64).max(1);
        let at = (stratum * width + g.rng.below(width)).clamp(1, bytes.len() as u64 - 1) as usize;
        g.write(
            &format!("truncated/{name}-at-{at}.pdf"),
            &bytes[..at],
            "truncated",
            Expect::Either,
        )?;
    }
    for i in 0..count - truncations {
        let (name, bytes) = &bases[i % bases.len()];
        let mut b = bytes.clone();
        let n = 1 + g.rng.below(8);
        for _ in 0..n {
            let at = g.rng.below(b.len() as u64) as usize;
            // Never the same value: every variant differs from its base.
            b[at] ^= 1 + g.rng.below(255) as u8;
        }
        g.write(
            &format!("flipped/{name}-{i:03}.pdf"),
            &b,
            "byte-flips",
            Expect::Either,
        )?;
    }
    Ok(())
}

fn encrypted(g: &mut Gen) -> Result<()> {
    let pages = [text_page(7), text_page(8)];
    for (name, user, expect) in [
        (
            "encrypted/user-password.pdf",
            "secret",
            Expect::Fails("encrypted"),
        ),
        (
            "encrypted/long-user-password.pdf",
            "correct horse battery staple, and more than 32 bytes",
            Expect::Fails("encrypted"),
        ),
        // Only an owner password: every reader opens it without asking.
        ("encrypted/owner-password-only.pdf", "", Expect::Ingested),
    ] {
        let enc = Encryption {
            user_password: user.as_bytes().to_vec(),
            owner_password: b"owner".to_vec(),
            permissions: -3904, // printing and copying not allowed
        };
        let kind = if user.is_empty() {
            "encrypted-owner-only"
        } else {
            "encrypted-user-password"
        };
        g.write(name, &document(&pages, Some(&enc)), kind, expect)?;
    }
    Ok(())
}

/// Page boxes from zero to kilometres. Big ones render at reduced resolution (the pixel cap),
/// impossible ones fail with the size in the reason.
fn page_boxes(g: &mut Gen) -> Result<()> {
    const METRE: f64 = 72.0 / 0.0254;
    let cases: [(&str, f64, f64, Expect); 8] = [
        ("5m-square", 5.0 * METRE, 5.0 * METRE, Expect::Ingested),
        ("5m-by-3m", 5.0 * METRE, 3.0 * METRE, Expect::Ingested),
        (
            "100m-square",
            100.0 * METRE,
            100.0 * METRE,
            Expect::Ingested,
        ),
        ("1e9pt-square", 1e9, 1e9, Expect::Ingested),
        (
            "5m-by-1cm",
            5.0 * METRE,
            0.01 * METRE,
            Expect::Fails("aspect ratio"),
        ),
        ("tiny-1pt", 1.0, 1.0, Expect::Ingested),
        ("zero-width", 0.0, 842.0, Expect::Either),
        ("negative", -595.0, -842.0, Expect::Either),
    ];
    for (name, w, h, expect) in cases {
        let page = PageSpec {
            width_pt: w,
            height_pt: h,
            ..text_page(3)
        };
        g.write(
            &format!("page-box/{name}.pdf"),
            &document(&[page], None),
            "page-box",
            expect,
        )?;
    }
    Ok(())
}

/// A one-page document whose page dictionary carries `extra` and whose content stream is
/// `content` (with the stream dictionary entries `content_dict`, e.g. a /Filter); `objects` are
/// added first (numbers from 5 on).
fn page_with(extra: &str, content_dict: &str, content: Vec<u8>, objects: &[String]) -> Vec<u8> {
    let mut w = PdfWriter::default();
    let catalog = w.reserve(); // 1
    let tree = w.reserve(); // 2
    let font = w.add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"); // 3
    let c = w.add_stream(content_dict, content); // 4
    for o in objects {
        w.add(o.clone());
    }
    let page = w.add(format!(
        "<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 595 842] /Contents {c} 0 R \
         /Resources << /Font << /F1 {font} 0 R >> >> {extra} >>"
    ));
    w.set(
        tree,
        format!("<< /Type /Pages /Kids [{page} 0 R] /Count 1 >>"),
    );
    w.set(catalog, format!("<< /Type /Catalog /Pages {tree} 0 R >>"));
    w.finish(catalog, None)
}

/// `pdf` with the first stream's /Length replaced by `length`.
fn with_first_length(pdf: &[u8], length: u64) -> Vec<u8> {
    let key = b"/Length ";
    let Some(at) = pdf.windows(key.len()).position(|w| w == key) else {
        return pdf.to_vec();
    };
    let digits = pdf[at + key.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let mut out = pdf[..at + key.len()].to_vec();
    out.extend_from_slice(length.to_string().as_bytes());
    out.extend_from_slice(&pdf[at + key.len() + digits..]);
    out
}

fn hello() -> Vec<u8> {
    format!(
        "BT /F1 24 Tf 72 720 Td ({}) Tj ET",
        escape_string("Structure test page")
    )
    .into_bytes()
}

/// Zero pages, cycles and very deep nesting: parsers that recurse must stop somewhere.
fn structure(g: &mut Gen) -> Result<()> {
    let mut w = PdfWriter::default();
    let catalog = w.reserve();
    let tree = w.add("<< /Type /Pages /Kids [] /Count 0 >>");
    w.set(catalog, format!("<< /Type /Catalog /Pages {tree} 0 R >>"));
    g.write(
        "structure/zero-pages.pdf",
        &w.finish(catalog, None),
        "zero-pages",
        Expect::Fails("no pages"),
    )?;

    // A page tree whose node lists itself as a kid.
    let mut w = PdfWriter::default();
    let catalog = w.reserve();
    let tree = w.reserve();
    w.set(
        tree,
        format!("<< /Type /Pages /Kids [{tree} 0 R] /Count 1 >>"),
    );
    w.set(catalog, format!("<< /Type /Catalog /Pages {tree} 0 R >>"));
    g.write(
        "structure/page-tree-cycle.pdf",
        &w.finish(catalog, None),
        "page-tree-cycle",
        Expect::Either,
    )?;

    let depth = 200_000;
    let arrays = format!("/Deep {}{}", "[".repeat(depth), "]".repeat(depth));
    g.write(
        "structure/nested-arrays.pdf",
        &page_with(&arrays, "", hello(), &[]),
        "deep-nesting",
        Expect::Either,
    )?;
    let dicts = format!(
        "/Deep {}{}",
        "<< /A ".repeat(depth / 4),
        ">>".repeat(depth / 4)
    );
    g.write(
        "structure/nested-dicts.pdf",
        &page_with(&dicts, "", hello(), &[]),
        "deep-nesting",
        Expect::Either,
    )?;
    // Graphics state saved 100 000 times without restoring, then a long path.
    let mut content = "q ".repeat(100_000).into_bytes();
    content.extend_from_slice(b"0 0 m ");
    for i in 0..50_000 {
        content.extend_from_slice(format!("{} {} l ", i % 595, (i * 7) % 842).as_bytes());
    }
    content.extend_from_slice(b"S ");
    content.extend(hello());
    g.write(
        "structure/nested-graphics-states.pdf",
        &page_with("", "", content, &[]),
        "deep-nesting",
        Expect::Either,
    )?;
    // A chain of 20 000 indirect references ending in the page's /Rotate.
    let first = 5u32;
    let chain: Vec<String> = (0..20_000u32)
        .map(|i| {
            if i + 1 < 20_000 {
                format!("{} 0 R", first + i + 1)
            } else {
                "0".into()
            }
        })
        .collect();
    g.write(
        "structure/reference-chain.pdf",
        &page_with(&format!("/Rotate {first} 0 R"), "", hello(), &chain),
        "deep-nesting",
        Expect::Either,
    )?;
    // An object that refers to itself.
    g.write(
        "structure/self-reference.pdf",
        &page_with("/Rotate 5 0 R", "", hello(), &["5 0 R".to_string()]),
        "self-reference",
        Expect::Either,
    )?;
    // A decompression bomb: 256 MB of content stream (NUL is whitespace) in a few hundred kB.
    let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 256 << 20], 1);
    g.write(
        "structure/flate-bomb-content.pdf",
        &page_with("", "/Filter /FlateDecode", bomb, &[]),
        "decompression-bomb",
        Expect::Either,
    )?;
    // A stream claiming to be 2 GB long.
    let b = with_first_length(&page_with("", "", hello(), &[]), 2_147_483_647);
    g.write(
        "structure/huge-stream-length.pdf",
        &b,
        "bad-length",
        Expect::Either,
    )?;
    Ok(())
}

/// Images whose declared size is enormous: one really holds 400 megapixels (compressed to a few
/// hundred kB), one declares 10 gigapixels but holds a few bytes.
fn images(g: &mut Gen) -> Result<()> {
    let (w, h) = (20_000usize, 20_000usize);
    let raw = vec![0u8; w.div_ceil(8) * h];
    let zipped = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 1);
    let big = ImageSpec {
        dict: format!(
            "/Width {w} /Height {h} /ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /FlateDecode"
        ),
        data: zipped,
    };
    let liar = ImageSpec {
        dict: "/Width 100000 /Height 100000 /ColorSpace /DeviceRGB /BitsPerComponent 8".into(),
        data: vec![0x80; 300],
    };
    for (name, img) in [("400-megapixels", big), ("10-gigapixels-declared", liar)] {
        let page = PageSpec {
            image: Some(img),
            ..text_page(4)
        };
        g.write(
            &format!("image/{name}.pdf"),
            &document(&[page], None),
            "enormous-image",
            Expect::Either,
        )?;
    }
    Ok(())
}

/// Files named `.pdf` that are something else.
fn not_pdfs(g: &mut Gen) -> Result<()> {
    let html = b"<!DOCTYPE html>\n<html><head><title>Sign in to download</title></head>\n<body><p>Your session has expired.</p></body></html>\n";
    let cases: [(&str, &[u8], &'static str); 8] = [
        ("not-pdf/download-page.pdf", html, "HTML"),
        (
            "not-pdf/lowercase-html.pdf",
            b"\n\n  <html>\n<body>moved</body></html>",
            "HTML",
        ),
        (
            "not-pdf/png-image.pdf",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0",
            "PNG",
        ),
        (
            "not-pdf/word-document.pdf",
            b"PK\x03\x04\x14\0\x06\0\x08\0\0\0!\0[Content_Types].xml",
            "ZIP",
        ),
        (
            "not-pdf/plain-text.pdf",
            b"Notes for chapter 3\nremember to cite Lindqvist 2019\n",
            "text",
        ),
        (
            "not-pdf/postscript.pdf",
            b"%!PS-Adobe-3.0\n%%Title: thesis\nshowpage\n",
            "PostScript",
        ),
        ("not-pdf/header-only.pdf", b"%PDF-1.7\n", "damaged"),
        ("not-pdf/whitespace.pdf", b" \n\t \n", "empty"),
    ];
    for (name, bytes, why) in cases {
        g.write(name, bytes, "not-a-pdf", Expect::Fails(why))?;
    }
    let mut noise = vec![0u8; 4096];
    noise.iter_mut().for_each(|b| *b = g.rng.below(256) as u8);
    g.write(
        "not-pdf/random-bytes.pdf",
        &noise,
        "not-a-pdf",
        Expect::Fails("not a PDF"),
    )?;
    g.write("empty.pdf", b"", "empty", Expect::Fails("empty"))?;
    Ok(())
}

/// Things that are not regular files, and links that lead nowhere.
fn special_files(g: &mut Gen) -> Result<()> {
    let fifo = g.root.join("special/pipe.pdf");
    std::fs::create_dir_all(g.root.join("special"))?;
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; mkfifo only reads it.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o644) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot create named pipe {}", fifo.display()));
    }
    g.note(
        "special/pipe.pdf",
        "fifo",
        Expect::Fails("not a regular file"),
    );
    g.symlink(
        "/dev/zero",
        "special/device.pdf",
        "device",
        Expect::Fails("not a regular file"),
    )?;
    // A folder named like a PDF is a folder: what is in it is ingested.
    let note = document(&[text_page(5)], None);
    g.write(
        "special/folder.pdf/inside.pdf",
        &note,
        "folder-named-pdf",
        Expect::Ingested,
    )?;
    g.symlink(
        "loop-b.pdf",
        "special/loop-a.pdf",
        "symlink-loop",
        Expect::Fails("symbolic links"),
    )?;
    g.symlink(
        "loop-a.pdf",
        "special/loop-b.pdf",
        "symlink-loop",
        Expect::Fails("symbolic links"),
    )?;
    g.symlink(
        "self.pdf",
        "special/self.pdf",
        "symlink-loop",
        Expect::Fails("symbolic links"),
    )?;
    g.symlink(
        "missing.pdf",
        "special/dangling.pdf",
        "dangling-symlink",
        Expect::Fails("No such file"),
    )?;
    // A folder link back up the tree: walked once, its files not reported twice.
    std::os::unix::fs::symlink("..", g.root.join("special/up"))?;
    Ok(())
}
