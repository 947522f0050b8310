//! The test bed of the wasm tests: a development server (`crates/devserver`: the backend and the
//! venue stand-in on one origin) on a free port, serving the assembled site, with the test
//! controls on and CORS for the wasm-bindgen-test runner's origin. Stopped when dropped.

use std::path::Path;

use crate::service::{Service, fresh_dir};
use crate::sh::{cmd, root, run};

/// A running development server.
pub(crate) struct Testbed {
    service: Service,
}

impl Testbed {
    /// Builds and starts `devserver` for `site`; returns once it listens.
    pub(crate) fn start(site: &Path) -> Result<Self, String> {
        run(&mut cmd("cargo", &["build", "--locked", "--quiet", "-p", "devserver"]))?;
        let (dir, data) = fresh_dir("testbed")?;
        let program = root().join("target/debug/devserver");
        let (data, site) = (data.to_string_lossy(), site.to_string_lossy());
        let command = cmd(
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
        );
        let service = Service::start(
            "testbed",
            command,
            dir.join("devserver.log"),
            "devserver: listening on ",
        )?;
        Ok(Self { service })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        self.service.address()
    }
}
