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
    if s.profile == "release" {
        strip_name_section(&out.join(format!("{}_bg.wasm", s.out_name)))?;
    }
    write_package_json(&root().join(&s.crate_dir), &out)?;
    Ok(out)
}

/// Replaces the `package.json` wasm-pack wrote with the crate's own (name, `exports`, `files`),
/// keeping the `version` wasm-pack took from Cargo.
fn write_package_json(crate_dir: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (ours, theirs) = (crate_dir.join("package.json"), out.join("package.json"));
    let version = json_string(&read(&theirs)?, "version")
        .ok_or_else(|| format!("{} has no version", theirs.display()))?;
    let template = read(&ours)?;
    let (start, end) = json_string_span(&template, "version")
        .ok_or_else(|| format!("{} has no version", ours.display()))?;
    let text = format!("{}{version}{}", &template[..start], &template[end..]);
    std::fs::write(&theirs, text).map_err(|e| format!("cannot write {}: {e}", theirs.display()))
}

/// The byte span of the string value of the first `"key": "…"` in a JSON text (no escapes).
fn json_string_span(json: &str, key: &str) -> Option<(usize, usize)> {
    let after_key = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let open = after_key + json[after_key..].find('"')? + 1;
    let close = open + json[open..].find('"')?;
    Some((open, close))
}

fn json_string(json: &str, key: &str) -> Option<String> {
    json_string_span(json, key).map(|(start, end)| json[start..end].to_owned())
}

/// Drops the `name` custom section (function names for stack traces, a third of the gzipped
/// package) from a release build. wasm-opt would do it, but it is off (see the crate's
/// `[package.metadata.wasm-pack]`), and `strip = true` in Cargo also drops the
/// `target_features` section that wasm-bindgen reads.
fn strip_name_section(path: &std::path::Path) -> Result<(), String> {
    let err = |e: String| format!("stripping names from {}: {e}", path.display());
    let wasm = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if wasm.get(..4) != Some(b"\0asm".as_slice()) {
        return Err(err("not a wasm module".to_owned()));
    }
    let mut out = wasm[..8].to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        let (size, body) =
            leb128(&wasm, at + 1).ok_or_else(|| err("bad section size".to_owned()))?;
        let end = body.checked_add(size).filter(|&e| e <= wasm.len());
        let end = end.ok_or_else(|| err("section past the end".to_owned()))?;
        let is_names = id == 0
            && leb128(&wasm, body)
                .and_then(|(len, name)| wasm.get(name..name.checked_add(len)?))
                .is_some_and(|name| name == b"name");
        if !is_names {
            out.extend_from_slice(&wasm[start..end]);
        }
        at = end;
    }
    std::fs::write(path, out).map_err(|e| err(e.to_string()))
}

/// An unsigned LEB128 at `at`: its value and the offset after it.
fn leb128(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(at)?;
        at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}
