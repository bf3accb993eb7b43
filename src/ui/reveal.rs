//! "Reveal in file manager": the file selected in its folder where the platform can (`open -R` on
//! macOS, `explorer /select,` on Windows), else its folder opened (`xdg-open`: the desktop has no
//! one command that selects a file).

use std::path::Path;
use std::process::Command;

/// The command line that shows `file` in the platform's file manager.
pub fn reveal_command(file: &Path) -> Command {
    if cfg!(target_os = "macos") {
        let mut c = Command::new("open");
        c.arg("-R").arg(file);
        c
    } else if cfg!(target_os = "windows") {
        windows_select(file)
    } else {
        let mut c = Command::new("xdg-open");
        c.arg(file.parent().unwrap_or(file));
        c
    }
}

#[cfg(windows)]
fn windows_select(file: &Path) -> Command {
    use std::os::windows::process::CommandExt;
    // Explorer reads `/select,"path"` itself; the standard quoting of the whole argument would
    // hide the path from it.
    let mut c = Command::new("explorer");
    c.raw_arg(format!("/select,\"{}\"", file.display()));
    c
}

#[cfg(not(windows))]
fn windows_select(file: &Path) -> Command {
    let mut c = Command::new("explorer");
    c.arg(format!("/select,{}", file.display()));
    c
}

/// Launches the file manager without waiting for it. A file whose folder is gone (moved, an
/// unmounted drive) is reported instead of opening whatever the platform falls back to.
pub fn reveal(file: &Path) -> Result<String, String> {
    let folder = file.parent().unwrap_or(file);
    if !folder.is_dir() {
        return Err(format!(
            "its folder {} is not there (moved, or on a drive that is not mounted)",
            folder.display()
        ));
    }
    let mut cmd = reveal_command(file);
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.spawn() {
        Ok(_child) => Ok(format!("showed {} with {program}", file.display())),
        Err(e) => Err(format!(
            "could not start {program} ({e}); open {} yourself, or install xdg-utils",
            folder.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_file_or_its_folder() {
        let c = reveal_command(Path::new("/t/papers/a b.pdf"));
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        if cfg!(target_os = "macos") {
            assert_eq!(args, ["-R", "/t/papers/a b.pdf"]);
        } else if cfg!(target_os = "linux") {
            assert_eq!(c.get_program(), "xdg-open");
            assert_eq!(args, ["/t/papers"]);
        }
    }

    #[test]
    fn a_missing_folder_is_reported_not_opened() {
        let err = reveal(Path::new("/no/such/folder/a.pdf")).unwrap_err();
        assert!(err.contains("/no/such/folder is not there"), "{err}");
    }
}
