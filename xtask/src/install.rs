//! Installs what the build needs, idempotently: each step first checks and skips what is there.

use crate::sh::{cmd, output, root, run, which};

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

fn names(pkgs: &[(&str, &str)]) -> String {
    pkgs.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
}

fn is_root() -> bool {
    output(&mut cmd("id", &["-u"])).is_some_and(|s| s.trim() == "0")
}
