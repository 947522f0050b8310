//! The test bed of the wasm tests: a development server (`crates/devserver`: the backend and the
//! venue stand-in on one origin) on a free port, serving the assembled site, with the test
//! controls on and CORS for the wasm-bindgen-test runner's origin. Stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::sh::{cmd, root, run};

/// A running development server.
pub(crate) struct Testbed {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Testbed {
    /// Builds and starts `devserver` for `site`; returns once it listens.
    pub(crate) fn start(site: &Path) -> Result<Self, String> {
        run(&mut cmd("cargo", &["build", "--locked", "--quiet", "-p", "devserver"]))?;
        let dir = root().join("target/testbed");
        let data = dir.join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data)
                .map_err(|e| format!("cannot clear {}: {e}", data.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("devserver.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let program = root().join("target/debug/devserver");
        let (data, site) = (data.to_string_lossy(), site.to_string_lossy());
        let mut child = cmd(
            &program.to_string_lossy(),
            &[
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &data,
                "--static-dir",
                &site,
                // The runner serves its test page from a random port of its own.
                "--cors-origin",
                "http://127.0.0.1:*",
                "--test-controls",
                // The page client's refresh tests wait for access tokens to expire.
                "--access-ttl-secs",
                "5",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;

        let stdout = child.stdout.take().ok_or("devserver has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let Some(url) = first.strip_prefix("devserver: listening on ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("devserver did not start (see {}): {first:?}", log.display()));
        };
        // Keep draining, so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        println!("testbed: devserver on {url} (log: {})", log.display());
        Ok(Self { child, url, log })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        println!("testbed: devserver stopped (log: {})", self.log.display());
    }
}
