//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use std::process::Command;

use crate::sh::{cmd, output, run, which};
use crate::testbed::Testbed;
use crate::{consumer, demo, fuzz, install, schemathesis, wasm};

/// Crates that compile to wasm32, linted for that target too.
const WASM_CRATES: &[&str] = &["protocol", "browser"];

/// Wasm test suites run in headless Chromium: (crate, where), where is `page` or `worker` for a
/// binary that runs in both (the runner picks by environment variable), or `configured` for a
/// crate whose binaries say where they run (`wasm_bindgen_test_configure!`). The browser crate
/// has one binary per place, so that a test needing a page cannot pass by returning early in a
/// worker run: each of its tests runs, where it can, exactly once.
const WASM_SUITES: &[(&str, &str)] =
    &[("protocol", "page"), ("protocol", "worker"), ("browser", "configured")];

/// Seconds a whole wasm suite may take in the browser (the runner's default is 20).
const WASM_SUITE_TIMEOUT_SECS: &str = "180";

pub(crate) fn all() -> Result<(), String> {
    install::ensure_all()?;
    run(&mut cmd("cargo", &["fmt", "--all", "--check"]))?;
    run(&mut cmd(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"],
    ))?;
    let mut wasm_clippy = vec!["clippy", "--target", "wasm32-unknown-unknown", "--all-targets"];
    for c in WASM_CRATES {
        wasm_clippy.extend(["-p", c]);
    }
    wasm_clippy.extend(["--locked", "--", "-D", "warnings"]);
    run(&mut cmd("cargo", &wasm_clippy))?;
    // Each wasm module is the crate built with one feature alone; code that only the other
    // module uses is dead there, which the default-features lint above cannot see.
    let settings = wasm::Settings::load()?;
    let (crate_dir, features) = settings.module_features();
    let manifest = format!("{crate_dir}/Cargo.toml");
    for feature in features {
        run(&mut cmd(
            "cargo",
            &[
                "clippy",
                "--target",
                "wasm32-unknown-unknown",
                "--manifest-path",
                &manifest,
                "--lib",
                "--no-default-features",
                "--features",
                feature,
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ))?;
    }
    wasm_has_no_openapi()?;
    // Built once (wasm-pack), then used by the host tests that drive Chromium through `/sw.js`
    // (crates/devserver/tests) and served by the test bed of the wasm suites.
    let site = demo::assemble_site()?;
    // The packed package in a fresh npm project: tsc --strict and a Vite build here, the built
    // app in Chromium in the end-to-end suite (its `consumer` scenario).
    let consumer = consumer::build(&settings.out_dir())?;
    run(cmd("cargo", &["test", "--workspace", "--locked"])
        .env("WEBSESSION_SITE_DIR", &site)
        .env("WEBSESSION_CONSUMER_DIR", &consumer))?;
    // The host tests above replayed every fuzz corpus (fuzz/corpus/) on stable, so a crash
    // found once stays fixed. The short run looking for new inputs is opt-in
    // (WEBSESSION_CI_FUZZ=1): its first build, a nightly release build of the fuzz crate with
    // the server's dependencies, takes about 22 minutes on two cores, over CI's time budget.
    // `cargo xtask fuzz` is the command for real runs.
    if std::env::var_os("WEBSESSION_CI_FUZZ").is_some_and(|v| v == "1") {
        fuzz::ci_short_run()?;
    }
    // The server's OpenAPI document against the server itself (schemathesis).
    schemathesis::run_against_server()?;
    let testbed = Testbed::start(&site)?;
    for (krate, place) in WASM_SUITES {
        run(&mut wasm_test(krate, place, &testbed)?)?;
    }
    drop(testbed);
    println!("xtask ci: all checks passed");
    Ok(())
}

/// The OpenAPI schemas of the wire types (protocol's `openapi` feature) are the server's
/// alone: the wasm package must not carry utoipa.
fn wasm_has_no_openapi() -> Result<(), String> {
    let mut c = cmd(
        "cargo",
        &[
            "tree",
            "--locked",
            "-p",
            "browser",
            "--target",
            "wasm32-unknown-unknown",
            "-e",
            "features",
        ],
    );
    let tree = output(&mut c).ok_or("cargo tree -p browser failed")?;
    if tree.contains("utoipa") {
        return Err("the wasm package depends on utoipa: protocol's `openapi` feature is on".into());
    }
    println!("ok: no utoipa in the wasm package");
    Ok(())
}

/// `cargo test --target wasm32-unknown-unknown -p <krate>` in headless Chromium, with the test
/// bed's URL compiled in (`WEBSESSION_DEVSERVER_URL`, read with `option_env!`).
fn wasm_test(krate: &str, place: &str, testbed: &Testbed) -> Result<Command, String> {
    let chromedriver = which("chromedriver").ok_or("chromedriver is not installed")?;
    let mut c =
        cmd("cargo", &["test", "--locked", "--target", "wasm32-unknown-unknown", "-p", krate]);
    c.env("CHROMEDRIVER", chromedriver)
        .env("WEBSESSION_DEVSERVER_URL", testbed.url())
        .env("WASM_BINDGEN_TEST_TIMEOUT", WASM_SUITE_TIMEOUT_SECS);
    // The runner's defaults for where a suite runs; a suite without `wasm_bindgen_test_configure!`
    // runs in a page or a service worker as these say.
    match place {
        "page" => c.env("WASM_BINDGEN_USE_BROWSER", "1"),
        "worker" => c.env("WASM_BINDGEN_USE_SERVICE_WORKER", "1"),
        // Binaries without tests (the crate's unit tests on wasm32) answer "no tests to run".
        "configured" => &mut c,
        other => return Err(format!("unknown wasm test place {other:?}")),
    };
    Ok(c)
}
