//! Builds the browser package with wasm-pack, with the settings in `wasm-pack.toml`.

use std::path::{Path, PathBuf};

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
    target: String,
    profile: String,
    /// The npm `binaryen` version whose wasm-opt optimises release builds.
    wasm_opt_version: String,
    /// wasm-opt's options (the input and output are added).
    wasm_opt: Vec<String>,
    /// The wasm modules of the package, each its own wasm-pack build.
    #[serde(rename = "module")]
    modules: Vec<Module>,
}

/// One wasm module of the package: the crate built with one cargo feature.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Module {
    /// The crate's feature that selects this module's code (`page`, `worker`).
    feature: String,
    /// The base name of the generated `.js`, `_bg.wasm` and `.d.ts` files.
    out_name: String,
    /// Whether wasm-pack writes TypeScript declarations.
    #[serde(default = "yes")]
    typescript: bool,
    /// A script of the repository copied into the package under its file name, which loads this
    /// module (the worker's `sw.js`).
    script: Option<String>,
}

fn yes() -> bool {
    true
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

    /// The crate directory (relative to the root) and the cargo feature of each module.
    pub(crate) fn module_features(&self) -> (&str, Vec<&str>) {
        (&self.crate_dir, self.modules.iter().map(|m| m.feature.as_str()).collect())
    }

    /// The npm version of binaryen whose wasm-opt optimises the modules.
    pub(crate) fn wasm_opt_version(&self) -> &str {
        &self.wasm_opt_version
    }
}

impl Module {
    /// The files of the package that a context using this module downloads: its script (if it
    /// has one), its JavaScript and its wasm.
    fn downloads(&self) -> Vec<String> {
        let script = self.script.as_deref().map(|s| file_name(s).to_owned());
        let own = [format!("{}.js", self.out_name), format!("{}_bg.wasm", self.out_name)];
        script.into_iter().chain(own).collect()
    }
}

/// The last component of a `/`-separated path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Builds every module with wasm-pack into a fresh package directory, completes the package
/// and prints what each context downloads; returns the package directory.
pub(crate) fn build() -> Result<PathBuf, String> {
    let s = Settings::load()?;
    let out = s.out_dir();
    // Two builds write into one directory: nothing of an earlier build may linger in it.
    if out.exists() {
        std::fs::remove_dir_all(&out)
            .map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    let out_str = out.to_string_lossy().into_owned();
    let profile = format!("--{}", s.profile);
    let release = s.profile == "release";
    let wasm_opt = if release { Some(crate::install::ensure_wasm_opt(&s)?) } else { None };
    for module in &s.modules {
        let mut args = vec![
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
            &module.out_name,
        ];
        if !module.typescript {
            args.push("--no-typescript");
        }
        args.extend(["--", "--no-default-features", "--features", &module.feature]);
        run(cmd("wasm-pack", &args).env("WASM_PACK_CACHE", root().join("target/wasm-pack-cache")))?;
        let wasm = out.join(format!("{}_bg.wasm", module.out_name));
        if let Some(program) = &wasm_opt {
            optimise(program, &s.wasm_opt, &wasm)?;
        }
        if release {
            strip_name_section(&wasm)?;
        }
        if let Some(script) = &module.script {
            copy_script(script, &out)?;
        }
    }
    write_package_json(&root().join(&s.crate_dir), &out)?;
    check_package(&out)?;
    report_sizes(&s, &out)?;
    Ok(out)
}

/// Runs wasm-opt (`program`, a node script) with `options` on a module, in place.
fn optimise(program: &Path, options: &[String], wasm: &Path) -> Result<(), String> {
    let (program, wasm) = (program.to_string_lossy(), wasm.to_string_lossy());
    let mut args = vec![program.as_ref()];
    args.extend(options.iter().map(String::as_str));
    args.extend([wasm.as_ref(), "-o", wasm.as_ref()]);
    run(&mut cmd("node", &args))
}

/// Puts a script of the repository (the service worker's `sw/sw.js`) into the package, next
/// to the module it imports.
fn copy_script(script: &str, out: &Path) -> Result<(), String> {
    let (from, to) = (root().join(script), out.join(file_name(script)));
    std::fs::copy(&from, &to)
        .map(drop)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

/// Prints, for each module, what its context downloads (raw and gzip -9, each file compressed
/// on its own as a server sends it), and the same for every `.wasm` and `.js` of the package.
fn report_sizes(s: &Settings, out: &Path) -> Result<(), String> {
    let sizes = |files: &[String]| -> Result<(u64, u64), String> {
        let mut total = (0, 0);
        for file in files {
            let (raw, gzipped) = file_sizes(&out.join(file))?;
            total = (total.0 + raw, total.1 + gzipped);
        }
        Ok(total)
    };
    let line = |what: &str, files: &[String]| -> Result<(), String> {
        let (raw, gzipped) = sizes(files)?;
        println!(
            "wasm: {what:<7} {gzipped:>7} B gzip -9 ({:.1} KiB), {raw:>7} B raw: {}",
            gzipped as f64 / 1024.0,
            files.join(" + ")
        );
        Ok(())
    };
    for module in &s.modules {
        line(&module.feature, &module.downloads())?;
    }
    let json = read_package_json(out)?;
    let files = files_list(&json).ok_or("package.json has no `files` list")?;
    let code = files.into_iter().filter(|f| f.ends_with(".js") || f.ends_with(".wasm"));
    line("package", &code.map(str::to_owned).collect::<Vec<_>>())
}

/// A file's size and the size of its `gzip -9` output.
fn file_sizes(path: &Path) -> Result<(u64, u64), String> {
    let raw = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    let gzip = std::process::Command::new("gzip")
        .args(["-9", "--stdout"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !gzip.status.success() {
        return Err(format!("gzip -9 {}: {}", path.display(), gzip.status));
    }
    Ok((raw, gzip.stdout.len() as u64))
}

/// The `files` list of a `package.json`.
fn files_list(json: &serde_json::Value) -> Option<Vec<&str>> {
    json["files"].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
}

fn read_package_json(out: &Path) -> Result<serde_json::Value, String> {
    let path = out.join("package.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks that the package is whole, as `npm pack` will see it: every name in `files`, every
/// target in `exports` and `types` exists, every export and every relative import of its
/// JavaScript is among `files`, so no user gets a broken import (npm packs only what `files`
/// lists *and* exists). The consumer test (`cargo xtask consumer`) then proves the tarball.
fn check_package(out: &Path) -> Result<(), String> {
    let json = read_package_json(out)?;
    let err = |what: String| format!("the package in {} is incomplete: {what}", out.display());
    let files =
        files_list(&json).ok_or_else(|| err("package.json has no `files` list".to_owned()))?;
    for file in &files {
        if !out.join(file).is_file() {
            return Err(err(format!("`files` lists {file}, which the build did not write")));
        }
    }
    // npm always packs package.json; everything else must be listed.
    let packed = |name: &str| name == "package.json" || files.contains(&name);
    let mut targets = Vec::new();
    collect_strings(&json["exports"], &mut targets);
    targets.extend(json["types"].as_str());
    for target in targets {
        let name = target.strip_prefix("./").unwrap_or(target);
        if !packed(name) {
            return Err(err(format!("{target} (in `exports` or `types`) is not in `files`")));
        }
    }
    for file in files.iter().filter(|f| f.ends_with(".js")) {
        let source = std::fs::read_to_string(out.join(file))
            .map_err(|e| err(format!("cannot read {file}: {e}")))?;
        for import in relative_imports(&source) {
            let name = import.strip_prefix("./").unwrap_or(import);
            if import.starts_with("../") || !packed(name) {
                return Err(err(format!("{file} imports {import}, which is not in the package")));
            }
        }
    }
    Ok(())
}

/// The string literal `text` starts with (after spaces), if it starts with one.
fn quoted(text: &str) -> Option<&str> {
    let rest = text.trim_start();
    let quote = rest.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let rest = &rest[1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// Every string anywhere in a JSON value (the targets of a nested `exports` map).
fn collect_strings<'a>(value: &'a serde_json::Value, into: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => into.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, into)),
        serde_json::Value::Object(o) => o.values().for_each(|v| collect_strings(v, into)),
        _ => {}
    }
}

/// The relative specifiers a module loads: `from './x'`, `import './x'`, and the
/// `new URL('x', import.meta.url)` with which wasm-bindgen finds the `.wasm` file.
fn relative_imports(source: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for line in source.lines().map(str::trim) {
        if line.starts_with("//") || line.starts_with('*') {
            continue;
        }
        let mut specifiers = Vec::new();
        if let Some(at) = line.find(" from ") {
            specifiers.extend(quoted(&line[at + 6..]));
        }
        if let Some(rest) = line.strip_prefix("import ") {
            specifiers.extend(quoted(rest));
        }
        if let Some(at) = line.find("new URL(")
            && line[at..].contains("import.meta.url")
        {
            specifiers.extend(quoted(&line[at + 8..]));
        }
        found.extend(specifiers.into_iter().filter(|s| {
            !s.contains(':') && !s.starts_with('/') && (s.starts_with('.') || !s.contains('/'))
        }));
    }
    found
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
/// package) from a release build, whatever wasm-opt's options keep: `strip = true` in Cargo
/// would also drop the `target_features` section that wasm-bindgen reads.
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

#[cfg(test)]
mod tests {
    // A failed setup step should stop the test where it happened.
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A package folder under the system's temp dir with `files` written into it.
    fn package(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-check-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    const PACKAGE_JSON: &str = r#"{"name": "p", "types": "./p.d.ts",
        "exports": {".": {"types": "./p.d.ts", "default": "./p.js"}, "./sw.js": "./sw.js"},
        "files": ["p.js", "p.d.ts", "p_bg.wasm", "sw.js"]}"#;
    const P_JS: &str = "const u = new URL('p_bg.wasm', import.meta.url);\nexport default 1;\n";

    /// The repository's own settings: the worker script loads the worker module and nothing
    /// else, never the page client's (which is the point of building two modules).
    #[test]
    fn the_worker_script_imports_only_its_own_module() {
        let settings = Settings::load().unwrap();
        let worker = settings.modules.iter().find(|m| m.script.is_some()).unwrap();
        let script = std::fs::read_to_string(root().join(worker.script.as_ref().unwrap())).unwrap();
        let own = format!("./{}.js", worker.out_name);
        assert_eq!(relative_imports(&script), [own.as_str()]);
        assert_eq!(worker.downloads(), ["sw.js", "websession_sw.js", "websession_sw_bg.wasm"]);
    }

    #[test]
    fn a_whole_package_passes() {
        let dir = package(
            "whole",
            &[
                ("package.json", PACKAGE_JSON),
                ("p.js", P_JS),
                ("p.d.ts", ""),
                ("p_bg.wasm", ""),
                ("sw.js", "// import './elsewhere.js' in a comment\nimport init from './p.js';\n"),
            ],
        );
        assert_eq!(check_package(&dir), Ok(()));
    }

    /// The issue's tarball: `files` and `exports` named `sw.js`, which was never copied in.
    #[test]
    fn files_naming_a_sw_js_that_was_not_built_is_refused() {
        let dir = package(
            "no-sw",
            &[("package.json", PACKAGE_JSON), ("p.js", P_JS), ("p.d.ts", ""), ("p_bg.wasm", "")],
        );
        let err = check_package(&dir).unwrap_err();
        assert!(err.contains("`files` lists sw.js"), "{err}");
    }

    /// The issue's `sw.js` importing `./pkg/websession.js`, which is not in the package.
    #[test]
    fn a_worker_importing_outside_the_package_is_refused() {
        let dir = package(
            "bad-import",
            &[
                ("package.json", PACKAGE_JSON),
                ("p.js", P_JS),
                ("p.d.ts", ""),
                ("p_bg.wasm", ""),
                ("sw.js", "import init, * as wasm from './pkg/websession.js';\n"),
            ],
        );
        let err = check_package(&dir).unwrap_err();
        assert!(err.contains("sw.js imports ./pkg/websession.js"), "{err}");
    }

    #[test]
    fn an_export_not_in_files_is_refused() {
        let json = PACKAGE_JSON.replace(r#""./sw.js": "./sw.js""#, r#""./x.js": "./x.js""#);
        let dir = package(
            "export",
            &[
                ("package.json", &json),
                ("p.js", P_JS),
                ("p.d.ts", ""),
                ("p_bg.wasm", ""),
                ("sw.js", ""),
                ("x.js", ""),
            ],
        );
        let err = check_package(&dir).unwrap_err();
        assert!(err.contains("./x.js (in `exports` or `types`) is not in `files`"), "{err}");
    }
}
