//! `cargo xtask`: the one driver for installing tools, building, testing and running the demo.
//!
//! If `cargo xtask ci` passes locally, CI (which runs `.ci/run`, which runs `cargo xtask ci`)
//! passes as well.

mod ci;
mod consumer;
mod demo;
mod fuzz;
mod install;
mod schemathesis;
mod service;
mod sh;
mod testbed;
mod wasm;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

  ci        install what is missing, then fmt, clippy (host, wasm32, and each wasm module's feature
            alone), the consumer build, host tests (the e2e suite and the fuzz corpus replay among
            them), 5 s per fuzz target where nightly and cargo-fuzz are installed, wasm tests in
            headless Chromium
  consumer  build the browser package, install its packed tarball in a fresh npm project outside
            the workspace, type-check (tsc --strict) and build (Vite) the app in tests/consumer/,
            and load it in headless Chromium against the development server (e2e consumer::)
  api-fuzz  run schemathesis (PyPI, pinned, installed into a venv under ~/.cache if missing)
            against the server binary from its /openapi.json: no 5xx, no answer that breaks the
            schema, status codes or content types its operation documents
  demo      build the browser package with wasm-pack (wasm-pack.toml), assemble the site and start the
            development server (backend + venue stand-in on one origin); prints the URL
  fuzz      run every fuzz target of fuzz/ (cargo-fuzz on nightly) for N seconds (--secs N, default
            60) and print executions per target; new inputs join fuzz/corpus/<target>/
  install   only install what is missing (wasm32 target, wasm-bindgen-cli, wasm-pack, node and npm,
            apt packages, wasm-opt from npm's binaryen into ~/.cache/websession)
  wasm      only build the browser package (its page and worker modules, wasm-pack, settings from
            wasm-pack.toml) and print what each context downloads (gzip -9)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::all(),
        Some("consumer") => consumer::run_consumer(),
        Some("api-fuzz") => schemathesis::run_against_server(),
        Some("demo") => demo::run_demo(&args[1..]),
        Some("fuzz") => fuzz::run_fuzz(&args[1..]),
        Some("install") => install::ensure_all(),
        Some("wasm") => wasm::build().map(|_| ()),
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
