//! "Open PDF at this page": a viewer that can jump to a page when one is installed (evince, okular,
//! zathura, mupdf), else the system's default opener without the page.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The command line that opens `file` at 1-based `page`, from the viewers found on `PATH`.
pub fn viewer_command(file: &Path, page: u32, path_var: Option<&std::ffi::OsStr>) -> Command {
    let find = |name: &str| -> Option<PathBuf> {
        std::env::split_paths(path_var?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    let page = page.max(1);
    if let Some(exe) = find("evince") {
        let mut c = Command::new(exe);
        c.arg(format!("--page-index={page}")).arg(file);
        return c;
    }
    if let Some(exe) = find("okular") {
        let mut c = Command::new(exe);
        c.arg("--page").arg(page.to_string()).arg(file);
        return c;
    }
    if let Some(exe) = find("zathura") {
        let mut c = Command::new(exe);
        c.arg(format!("--page={page}")).arg(file);
        return c;
    }
    if let Some(exe) = find("mupdf") {
        let mut c = Command::new(exe);
        c.arg(file).arg(page.to_string());
        return c;
    }
    let mut c = if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(target_os = "windows") {
        let mut c = Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        Command::new("xdg-open")
    };
    c.arg(file);
    c
}

/// Launches the viewer without waiting for it; the error says what to install.
pub fn open_at_page(file: &Path, page: u32) -> Result<String, String> {
    let mut cmd = viewer_command(file, page, std::env::var_os("PATH").as_deref());
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.spawn() {
        Ok(_child) => Ok(format!("opened {} at page {page} with {program}", file.display())),
        Err(e) => Err(format!(
            "could not start {program} ({e}); install a PDF viewer (evince, okular, zathura) or xdg-utils"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_a_viewer_that_takes_the_page() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zathura"), "").unwrap();
        let c = viewer_command(Path::new("/t/a.pdf"), 7, Some(dir.path().as_os_str()));
        assert!(c.get_program().to_string_lossy().ends_with("zathura"));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--page=7", "/t/a.pdf"]);
        let empty = tempfile::tempdir().unwrap();
        let c = viewer_command(Path::new("/t/a.pdf"), 7, Some(empty.path().as_os_str()));
        assert!(c.get_args().any(|a| a == "/t/a.pdf"));
    }
}
