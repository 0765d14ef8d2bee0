//! The Python clients (python-openstackclient, python-glanceclient) for the end-to-end tests.
//!
//! They live in a virtualenv: `$GLINT_TEST_VENV` if set, else `$HOME/.cache/glint/venv`. A
//! missing one is created once (`python3 -m venv` + `pip install`), under a file lock so that
//! concurrent test processes do not install into it at the same time.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The packages the tests drive, unmodified.
const PACKAGES: &[&str] = &["python-openstackclient", "python-glanceclient"];

/// The virtualenv's `bin` directory holding `openstack` and `glance`.
///
/// `None` (after printing "skipped: python clients unavailable: <why>") when they can neither
/// be found nor installed; with `CI=true` that panics instead, so CI cannot pass by skipping.
pub fn clients() -> Option<PathBuf> {
    static CLIENTS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match CLIENTS.get_or_init(prepare) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("python clients unavailable (required when CI=true): {why}");
            }
            eprintln!("skipped: python clients unavailable: {why}");
            None
        }
    }
}

/// Where the virtualenv is (or will be).
fn venv_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("GLINT_TEST_VENV").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or("neither GLINT_TEST_VENV nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/glint/venv"))
}

fn has_clients(bin: &Path) -> bool {
    ["openstack", "glance"].iter().all(|exe| bin.join(exe).is_file())
}

fn prepare() -> Result<PathBuf, String> {
    let venv = venv_dir()?;
    let bin = venv.join("bin");
    if has_clients(&bin) {
        return Ok(bin);
    }
    let parent = venv.parent().ok_or_else(|| format!("{} has no parent directory", venv.display()))?;
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let lock_path = venv.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have finished the installation while we waited for the lock.
    if has_clients(&bin) {
        return Ok(bin);
    }
    eprintln!("installing {} into {} (once)", PACKAGES.join(", "), venv.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv), "python3 -m venv")?;
    run(
        Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
        "pip install",
    )?;
    // The lock is released when `lock` is dropped.
    if has_clients(&bin) {
        Ok(bin)
    } else {
        Err(format!("pip install finished but {} lacks openstack or glance", bin.display()))
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what} could not be started: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
