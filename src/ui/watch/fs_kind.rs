//! Whether a folder is on a network file system, where change notifications (inotify) do not
//! see what other machines write: such folders are polled.

use std::path::Path;

/// The file system's name when it is a network one (NFS, SMB/CIFS, a FUSE mount such as sshfs).
#[cfg(target_os = "linux")]
pub fn network_fs(folder: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is a plain C struct of integers, for which all zeroes is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // The magic numbers of linux/magic.h (and fs/cifs, fs/smb).
    match st.f_type as u64 {
        0x6969 => Some("NFS"),
        0x517B => Some("SMB"),
        0xFF53_4D42 => Some("CIFS"),
        0xFE53_4D42 => Some("SMB2"),
        0x6573_5546 => Some("FUSE"),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
pub fn network_fs(_folder: &Path) -> Option<&'static str> {
    None
}
