//! Running commands: echo them, stream their output, and turn a failure into an error message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The repository root (the parent of `xtask/`).
pub(crate) fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$CARGO_HOME/bin`, where `cargo install` puts tools; added to `PATH` for every child.
pub(crate) fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Where xtask keeps the tools it installs outside the system (`$XDG_CACHE_HOME/websession`,
/// else `~/.cache/websession`), so that they outlive `cargo clean`.
pub(crate) fn cache_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("websession")
}

/// `PATH` with `$CARGO_HOME/bin` in front.
pub(crate) fn path_env() -> std::ffi::OsString {
    let mut paths = vec![cargo_bin()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// A command run from the repository root with the extended `PATH`.
pub(crate) fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root()).env("PATH", path_env());
    c
}

/// Runs `c`, printing it first and its duration after; fails on a non-zero exit.
pub(crate) fn run(c: &mut Command) -> Result<(), String> {
    let shown = show(c);
    println!("$ {shown}");
    let start = Instant::now();
    let status = c.status().map_err(|e| format!("{shown}: cannot start: {e}"))?;
    println!("  ({shown}: {:.1}s)", start.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(format!("{shown}: {status}")) }
}

/// Runs `c` quietly and returns its stdout, or `None` if it cannot start or fails.
pub(crate) fn output(c: &mut Command) -> Option<String> {
    let out = c.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on the (extended) `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&path_env()).map(|d| d.join(program)).find(|p| p.is_file())
}

fn show(c: &Command) -> String {
    let envs: Vec<String> = c
        .get_envs()
        .filter(|(k, _)| *k != "PATH")
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    let mut parts = envs;
    parts.push(c.get_program().to_string_lossy().into_owned());
    parts.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}
