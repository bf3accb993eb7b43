//! Any bytes as a segment file: opened as `Index::open` opens it (header, page table and every
//! page span's checksum), then every page read the way a search reads it (vectors, codes,
//! metadata); every step may refuse with an error, none may panic or read out of bounds. An input whose first byte is odd has its
//! checksums rewritten first (`fix_checksums`), so mutations reach the parsing behind them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagesight_fuzz::segment::{fix_checksums, SegmentReader};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The reader maps a file, so each input is written to one file per fuzzing process.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("pagesight-fuzz-segment-{}.psv", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        fix_checksums(&mut bytes);
    }
    let path = scratch();
    std::fs::write(path, &bytes).expect("scratch file writable");
    // The seeds are dim-32 segments (`pagesight __index-stress` default); 16 covers a mismatch.
    for dim in [32, 16] {
        let Ok(seg) = SegmentReader::open(path, dim, true) else {
            continue;
        };
        for i in 0..seg.entries.len() {
            let _ = seg.packed(i).len();
            let _ = seg.codes(i).len();
            let _ = seg.meta(i);
            let _ = seg.page_data(i);
        }
    }
});
