//! Documented fault-injection hook for reading files, so that tests (which often run as root,
//! where permissions do not stop a read) can make a read fail honestly: with the environment
//! variable [`crate::env_vars::READ_FAULT`] set to `<text>`, every read of a file whose name
//! contains `<text>` fails with an I/O error (EIO), in discovery and in the render workers alike.
//! Read only in builds with the crate's `test-hooks` feature; unset in normal runs, where it
//! costs one environment lookup per file.

use std::path::Path;

/// The injected error for `path`, if the hook is set and matches its file name.
pub fn injected_read_error(path: &Path) -> Option<std::io::Error> {
    if !cfg!(feature = "test-hooks") {
        return None;
    }
    let pattern = std::env::var_os(crate::env_vars::READ_FAULT)?;
    let pattern = pattern.to_str().filter(|p| !p.is_empty())?;
    let name = path.file_name()?.to_string_lossy();
    name.contains(pattern).then(|| {
        std::io::Error::other(format!(
            "Input/output error (injected by {})",
            crate::env_vars::READ_FAULT
        ))
    })
}
