//! A server that a test step starts (the wasm tests' development server, the server that
//! schemathesis probes): a fresh working directory under `target/`, its stderr logged there, its
//! address taken from the first line it prints; killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::sh::root;

/// `target/<name>/`, created, with an empty `data/` in it: `(the directory, data/)`. A data dir
/// left by an earlier run would carry its fronts and keys into this one.
pub(crate) fn fresh_dir(name: &str) -> Result<(PathBuf, PathBuf), String> {
    let dir = root().join("target").join(name);
    let data = dir.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .map_err(|e| format!("cannot clear {}: {e}", data.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok((dir, data))
}

/// A running server.
pub(crate) struct Service {
    /// Who started it, for the messages (`testbed`, `schemathesis`).
    owner: &'static str,
    child: Child,
    address: String,
    log: PathBuf,
}

impl Service {
    /// Spawns `command` with its stderr in `log` and returns once its first line on stdout,
    /// which must be `banner` followed by its address, has come.
    pub(crate) fn start(
        owner: &'static str,
        mut command: Command,
        log: PathBuf,
        banner: &str,
    ) -> Result<Self, String> {
        let program = PathBuf::from(command.get_program());
        let name = program.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| format!("{name} has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(address) = first.strip_prefix(banner).map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not start (see {}): {first:?}", log.display()));
        };
        // Keep draining, so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        println!("{owner}: {name} on {address} (log: {})", log.display());
        Ok(Self { owner, child, address, log })
    }

    /// What followed the banner: `host:port`, or a URL, as the server prints it.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("{}: server stopped (log: {})", self.owner, self.log.display());
    }
}
