//! Any bytes as a MANIFEST: parsed, checked and validated, or refused with an error; never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagesight_fuzz::manifest::Manifest;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::decode(data, Path::new("MANIFEST"));
});
