//! Builds the browser package with wasm-pack, with the settings in `wasm-pack.toml`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::sh::{cmd, root, run};

/// The contents of `wasm-pack.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct Settings {
    /// The crate directory, relative to the root.
    #[serde(rename = "crate")]
    crate_dir: String,
    out_dir: String,
    out_name: String,
    target: String,
    profile: String,
}

impl Settings {
    pub(crate) fn load() -> Result<Self, String> {
        let path = root().join("wasm-pack.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The package directory.
    pub(crate) fn out_dir(&self) -> PathBuf {
        root().join(&self.out_dir)
    }
}

/// Runs `wasm-pack build` and returns the package directory.
pub(crate) fn build() -> Result<PathBuf, String> {
    let s = Settings::load()?;
    let out = s.out_dir();
    let out_str = out.to_string_lossy().into_owned();
    let profile = format!("--{}", s.profile);
    run(cmd(
        "wasm-pack",
        &[
            "--log-level",
            "warn",
            "build",
            &s.crate_dir,
            &profile,
            "--target",
            &s.target,
            "--out-dir",
            &out_str,
            "--out-name",
            &s.out_name,
        ],
    )
    .env("WASM_PACK_CACHE", root().join("target/wasm-pack-cache")))?;
    Ok(out)
}
