//! Installs what the build needs, idempotently: each step first checks and skips what is there.

use std::path::PathBuf;

use crate::sh::{cache_dir, cmd, output, root, run, which};
use crate::wasm::Settings;

/// Debian packages the tests and the demo use, with a file that shows each is installed.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
    ("redis-server", "/usr/bin/redis-server"),
    // `redis-cli --cluster create` makes the test Redis Cluster (crates/server/tests/tokens).
    ("redis-tools", "/usr/bin/redis-cli"),
    // A real load balancer in front of two instances (crates/server/tests/events/cluster.rs).
    ("nginx-light", "/usr/sbin/nginx"),
    // The pub/sub module `loadgen peer` compares the event server with (crates/loadgen/nchan.conf
    // loads it by this path; nginx-light's own configuration loads it too, through
    // /etc/nginx/modules-enabled/50-mod-nchan.conf, which does nothing to a server that does
    // not use its directives).
    ("libnginx-mod-nchan", "/usr/lib/nginx/modules/ngx_nchan_module.so"),
];

/// Everything `ci` and `demo` need.
pub(crate) fn ensure_all() -> Result<(), String> {
    ensure_wasm_target()?;
    ensure_wasm_bindgen()?;
    ensure_wasm_pack()?;
    ensure_apt()?;
    ensure_node()?;
    ensure_wasm_opt(&Settings::load()?)?;
    Ok(())
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed =
        output(&mut cmd("rustup", &["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        println!("ok: rustup target wasm32-unknown-unknown");
        return Ok(());
    }
    run(&mut cmd("rustup", &["target", "add", "wasm32-unknown-unknown"]))
}

/// The `wasm-bindgen` version in `Cargo.lock`: the CLI must match it exactly.
pub(crate) fn locked_wasm_bindgen_version() -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = "))
        {
            return Ok(v.trim_matches('"').to_owned());
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".to_owned())
}

fn ensure_wasm_bindgen() -> Result<(), String> {
    let want = locked_wasm_bindgen_version()?;
    let have = output(&mut cmd("wasm-bindgen", &["--version"])).unwrap_or_default();
    let runner = which("wasm-bindgen-test-runner").is_some();
    if runner && have.split_whitespace().nth(1) == Some(want.as_str()) {
        println!("ok: wasm-bindgen-cli {want}");
        return Ok(());
    }
    // Without --locked: one of the CLI's locked dependencies is no longer on the registry.
    run(&mut cmd("cargo", &["install", "wasm-bindgen-cli", "--version", &want, "--force"]))
}

fn ensure_wasm_pack() -> Result<(), String> {
    if let Some(v) = output(&mut cmd("wasm-pack", &["--version"])) {
        println!("ok: {}", v.trim());
        return Ok(());
    }
    run(&mut cmd("cargo", &["install", "wasm-pack"]))
}

fn ensure_apt() -> Result<(), String> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        println!("ok: apt packages {}", names(APT_PACKAGES));
        return Ok(());
    }
    apt_install(&missing)
}

/// `apt-get update` and `apt-get install` of `packages` (with sudo unless root).
pub(crate) fn apt_install(packages: &[&str]) -> Result<(), String> {
    let sudo = if is_root() { vec![] } else { vec!["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.clone();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut c = cmd(all[0], &all[1..]);
        c.env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut c)
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    apt(&args)
}

/// Node and npm, for the consumer test (`npm pack`, TypeScript and Vite from npm). Whatever
/// `node` is on `PATH` is used; Debian's packages are installed only when there is none.
fn ensure_node() -> Result<(), String> {
    for (program, package) in [("node", "nodejs"), ("npm", "npm")] {
        if which(program).is_none() {
            apt_install(&[package])?;
        }
    }
    let node = output(&mut cmd("node", &["--version"])).unwrap_or_default();
    let npm = output(&mut cmd("npm", &["--version"])).unwrap_or_default();
    println!("ok: node {}, npm {}", node.trim(), npm.trim());
    Ok(())
}

/// binaryen's `wasm-opt` at the version `wasm-pack.toml` pins, from npm (the `binaryen`
/// package, run with node) into `binaryen-<version>` in xtask's cache directory unless it is
/// there; returns the script to run with `node`.
pub(crate) fn ensure_wasm_opt(settings: &Settings) -> Result<PathBuf, String> {
    let version = settings.wasm_opt_version();
    let dir = cache_dir().join(format!("binaryen-{version}"));
    let program = dir.join("node_modules/binaryen/bin/wasm-opt");
    let have = |program: &PathBuf| {
        output(&mut cmd("node", &[&program.to_string_lossy(), "--version"])).unwrap_or_default()
    };
    // `wasm-opt version 132 (version_132)` for 132.0.0.
    let major = version.split('.').next().unwrap_or(version);
    if have(&program).contains(&format!("version_{major}")) {
        println!("ok: wasm-opt {version} (npm binaryen)");
        return Ok(program);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let prefix = dir.to_string_lossy().into_owned();
    let package = format!("binaryen@{version}");
    let args = ["install", "--prefix", &prefix, "--no-save", "--no-audit", "--no-fund", &package];
    run(&mut cmd("npm", &args))?;
    if have(&program).contains(&format!("version_{major}")) {
        Ok(program)
    } else {
        Err(format!("{} does not run as wasm-opt {version}", program.display()))
    }
}

fn names(pkgs: &[(&str, &str)]) -> String {
    pkgs.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
}

fn is_root() -> bool {
    output(&mut cmd("id", &["-u"])).is_some_and(|s| s.trim() == "0")
}
