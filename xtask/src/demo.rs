//! `cargo xtask demo`: builds the browser package, assembles the site and starts the development
//! server (`crates/devserver`: the backend and the venue stand-in on one origin).

use std::path::Path;

use crate::sh::{cmd, root, run};
use crate::{install, wasm};

/// Where the demo listens unless `--listen` says otherwise.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub(crate) fn run_demo(args: &[String]) -> Result<(), String> {
    let listen = match args {
        [] => DEFAULT_LISTEN.to_owned(),
        [flag, addr] if flag == "--listen" => addr.clone(),
        _ => return Err("usage: cargo xtask demo [--listen ADDR]".to_owned()),
    };
    install::ensure_all()?;
    let site = assemble_site()?;
    run(&mut cmd("cargo", &["build", "--quiet", "-p", "devserver"]))?;
    let data = root().join("target/demo-data");
    println!();
    println!("demo: open http://{listen}/ in a browser (Ctrl-C stops the demo)");
    println!();
    run(cmd(
        &root().join("target/debug/devserver").to_string_lossy(),
        &[
            "--listen",
            &listen,
            "--data-dir",
            &data.to_string_lossy(),
            "--static-dir",
            &site.to_string_lossy(),
            "--login-link",
        ],
    )
    .env("RUST_LOG", "info,tower_http=warn"))
}

/// `target/site/`: the web app (`www/`, with its one-line `/sw.js` that imports `./pkg/sw.js`)
/// and the browser package under `pkg/`, as a site without a bundler serves them.
pub(crate) fn assemble_site() -> Result<std::path::PathBuf, String> {
    let pkg = wasm::build()?;
    let site = root().join("target/site");
    if site.exists() {
        std::fs::remove_dir_all(&site)
            .map_err(|e| format!("cannot clear {}: {e}", site.display()))?;
    }
    copy_dir(&root().join("www"), &site)?;
    copy_dir(&pkg, &site.join("pkg"))?;
    Ok(site)
}

/// Copies a file or a directory tree.
pub(crate) fn copy_path(from: &Path, to: &Path) -> Result<(), String> {
    if from.is_dir() {
        copy_dir(from, to)
    } else {
        std::fs::copy(from, to).map(drop).map_err(|e| format!("copying {}: {e}", from.display()))
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let err = |e: std::io::Error, p: &Path| format!("copying {}: {e}", p.display());
    std::fs::create_dir_all(to).map_err(|e| err(e, to))?;
    for entry in std::fs::read_dir(from).map_err(|e| err(e, from))? {
        let entry = entry.map_err(|e| err(e, from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| err(e, &src))?;
        }
    }
    Ok(())
}
