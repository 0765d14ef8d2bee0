//! Python programs the tests drive unmodified, each in a virtualenv of its own: the clients
//! (python-openstackclient, python-glanceclient) and Keystone.
//!
//! A virtualenv is `$<VAR>` if set, else under `$HOME/.cache/glint/`. A missing one is created
//! once (`python3 -m venv` + `pip install`), under a file lock so that concurrent test
//! processes do not install into it at the same time.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// One virtualenv: where it is and what it must hold.
struct Venv {
    /// What it is, in "skipped: ... unavailable" messages.
    what: &'static str,
    /// The variable naming its directory.
    var: &'static str,
    /// Its directory under `$HOME/.cache/glint` when the variable is unset.
    default_dir: &'static str,
    packages: &'static [&'static str],
    /// Programs in `bin` that show the installation is complete.
    executables: &'static [&'static str],
}

const CLIENTS: Venv = Venv {
    what: "python clients",
    var: "GLINT_TEST_VENV",
    default_dir: "venv",
    packages: &["python-openstackclient", "python-glanceclient"],
    executables: &["openstack", "glance"],
};

const KEYSTONE: Venv = Venv {
    what: "keystone",
    var: "GLINT_KEYSTONE_VENV",
    default_dir: "keystone-venv",
    packages: &["keystone"],
    executables: &["keystone-manage"],
};

/// The `bin` directory holding `openstack` and `glance`.
///
/// `None` (after printing "skipped: python clients unavailable: <why>") when they can neither
/// be found nor installed; with `CI=true` that panics instead, so CI cannot pass by skipping.
pub fn clients() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ready(&CLIENTS, &BIN)
}

/// The `bin` directory of a virtualenv with Keystone (its `python` runs Keystone), or `None`
/// as for [`clients`].
pub fn keystone() -> Option<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ready(&KEYSTONE, &BIN)
}

fn ready(venv: &Venv, cell: &OnceLock<Result<PathBuf, String>>) -> Option<PathBuf> {
    match cell.get_or_init(|| prepare(venv)) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{} unavailable (required when CI=true): {why}", venv.what);
            }
            eprintln!("skipped: {} unavailable: {why}", venv.what);
            None
        }
    }
}

/// Where the virtualenv is (or will be).
fn venv_dir(venv: &Venv) -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(venv.var).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home =
        std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(format!("neither {} nor HOME is set", venv.var))?;
    Ok(PathBuf::from(home).join(".cache/glint").join(venv.default_dir))
}

fn complete(venv: &Venv, bin: &Path) -> bool {
    venv.executables.iter().all(|exe| bin.join(exe).is_file())
}

fn prepare(venv: &Venv) -> Result<PathBuf, String> {
    let dir = venv_dir(venv)?;
    let bin = dir.join("bin");
    if complete(venv, &bin) {
        return Ok(bin);
    }
    let parent = dir.parent().ok_or_else(|| format!("{} has no parent directory", dir.display()))?;
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let lock_path = dir.with_extension("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process may have finished the installation while we waited for the lock.
    if complete(venv, &bin) {
        return Ok(bin);
    }
    eprintln!("installing {} into {} (once)", venv.packages.join(", "), dir.display());
    run(Command::new("python3").arg("-m").arg("venv").arg(&dir), "python3 -m venv")?;
    run(
        Command::new(bin.join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(venv.packages),
        "pip install",
    )?;
    // The lock is released when `lock` is dropped.
    if complete(venv, &bin) {
        Ok(bin)
    } else {
        Err(format!("pip install finished but {} lacks {}", bin.display(), venv.executables.join(" or ")))
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command.stdin(Stdio::null()).output().map_err(|e| format!("{what} could not be started: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}
