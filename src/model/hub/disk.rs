//! Free space on the disk the cache is on (statvfs), checked before a download starts; and the
//! recognition of a full disk when a write fails mid-way.

use std::path::Path;

/// Bytes an unprivileged user may still write on the file system holding `dir` (the nearest
/// existing ancestor when `dir` does not exist yet); None where that cannot be asked.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    statvfs_free(existing)
}

#[cfg(unix)]
fn statvfs_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `s` a writable statvfs the call fills in.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `s`.
    let s = unsafe { s.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

#[cfg(not(unix))]
fn statvfs_free(_path: &Path) -> Option<u64> {
    None
}

/// The write failed because the disk (or the user's quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || e.kind() == std::io::ErrorKind::StorageFull
    }
    #[cfg(not(unix))]
    {
        e.kind() == std::io::ErrorKind::StorageFull
    }
}

/// `a - b` (or 0), as `gb` writes it.
pub fn gb_diff(a: impl std::borrow::Borrow<u64>, b: impl std::borrow::Borrow<u64>) -> String {
    gb(a.borrow().saturating_sub(*b.borrow()))
}

/// "7.6 GB" (decimal units, as disks are sold and file managers show them).
pub fn gb(bytes: impl std::borrow::Borrow<u64>) -> String {
    let bytes = *bytes.borrow();
    let g = bytes as f64 / 1e9;
    if g >= 10.0 {
        format!("{g:.0} GB")
    } else if g >= 0.1 {
        format!("{g:.1} GB")
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}
