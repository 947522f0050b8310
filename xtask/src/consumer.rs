//! The consumer test's build: the browser package as a web developer gets it. A fresh project
//! outside the workspace (`$TMPDIR/websession-consumer`) `npm pack`s the built package, installs
//! the tarball with TypeScript 5 and Vite from npm, type-checks the app in `tests/consumer/` with
//! `tsc --strict` (and the demo page `www/app.js`, which carries `// @ts-check`, against the
//! installed declarations) and builds it with Vite, with the package's worker copied in as `/sw.js` the
//! way the package README says. The end-to-end suite (`tests/tests/e2e/consumer.rs`) then serves
//! the build against the development server's backend in headless Chromium.
//!
//! Outside the workspace on purpose: inside it, Node would resolve `websession` or TypeScript
//! through parent directories and the test could pass on files the tarball lacks.

use std::path::{Path, PathBuf};

use crate::sh::{cmd, output, root, run};
use crate::wasm;

/// The app's files, copied into the project on every run.
const APP_FILES: &[&str] =
    &["package.json", "tsconfig.json", "tsconfig.demo.json", "index.html", "src"];

/// npm without audits, funding notes or progress, from its cache where it can.
const NPM_QUIET: &[&str] =
    &["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", "--no-update-notifier"];

/// The project directory (kept between runs, so `node_modules` is installed once).
fn project_dir() -> PathBuf {
    std::env::temp_dir().join("websession-consumer")
}

/// Packs `pkg`, installs it with the app's tools and builds the app; returns the built site
/// (`dist/`: the app, and `/sw.js` with the files it imports).
pub(crate) fn build(pkg: &Path) -> Result<PathBuf, String> {
    let dir = project_dir();
    if dir.starts_with(root()) {
        return Err(format!("{} is inside the workspace; set TMPDIR elsewhere", dir.display()));
    }
    prepare(&dir)?;
    let out = output(
        cmd("npm", &["pack", &pkg.to_string_lossy(), "--pack-destination", &dir.to_string_lossy()])
            .args(NPM_QUIET)
            .arg("--silent"),
    )
    .ok_or_else(|| format!("npm pack {} failed", pkg.display()))?;
    let tarball = out.lines().rfind(|l| l.ends_with(".tgz")).map(str::trim);
    let tarball = tarball.ok_or_else(|| format!("npm pack named no tarball: {out:?}"))?;
    println!("consumer: packed {tarball} into {}", dir.display());
    // Installs the fresh tarball, and TypeScript and Vite (`devDependencies` of the app) only
    // if `node_modules` lacks them.
    run(cmd("npm", &["install", &format!("./{tarball}")]).args(NPM_QUIET).current_dir(&dir))?;
    run(cmd("npm", &["run", "--silent", "check"]).current_dir(&dir))?;
    run(cmd("npm", &["run", "--silent", "build"]).current_dir(&dir))?;
    let dist = dir.join("dist");
    for file in ["index.html", "sw.js", "websession_sw.js", "websession_sw_bg.wasm"] {
        if !dist.join(file).is_file() {
            return Err(format!("the consumer build has no {file} in {}", dist.display()));
        }
    }
    Ok(dist)
}

/// The project with the app's current files, its earlier build and copied worker gone.
fn prepare(dir: &Path) -> Result<(), String> {
    let err = |e: std::io::Error, p: &Path| format!("{}: {e}", p.display());
    std::fs::create_dir_all(dir).map_err(|e| err(e, dir))?;
    for stale in ["dist", "public", "src", "demo"] {
        let path = dir.join(stale);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| err(e, &path))?;
        }
    }
    for entry in std::fs::read_dir(dir).map_err(|e| err(e, dir))? {
        let path = entry.map_err(|e| err(e, dir))?.path();
        if path.extension().is_some_and(|x| x == "tgz") {
            std::fs::remove_file(&path).map_err(|e| err(e, &path))?;
        }
    }
    let app = root().join("tests/consumer");
    for name in APP_FILES {
        crate::demo::copy_path(&app.join(name), &dir.join(name))?;
    }
    // The demo page, type-checked by `npm run check` with `tsconfig.demo.json`.
    let demo = dir.join("demo");
    std::fs::create_dir_all(&demo).map_err(|e| err(e, &demo))?;
    crate::demo::copy_path(&root().join("www/app.js"), &demo.join("app.js"))?;
    Ok(())
}

/// `cargo xtask consumer`: builds the package and the app, then runs the end-to-end scenario
/// that loads the app in headless Chromium.
pub(crate) fn run_consumer() -> Result<(), String> {
    crate::install::ensure_all()?;
    let dist = build(&wasm::build()?)?;
    run(cmd("cargo", &["test", "--locked", "-p", "e2e", "--", "consumer::"])
        .env("WEBSESSION_CONSUMER_DIR", &dist))
}
