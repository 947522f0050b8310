//! The API fuzzing step of `cargo xtask ci`: schemathesis (from PyPI, pinned, in a venv of its
//! own) against the `server` binary, driven by the server's own `/openapi.json`. No answer may
//! be a 5xx, or break the schema, status codes or content types its operation documents.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use crate::install::apt_install;
use crate::service::{Service, fresh_dir};
use crate::sh::{cache_dir, cmd, output, root, run, which};

/// The pinned schemathesis; its check names are those of this version.
const VERSION: &str = "4.32.5";

/// What every answer must pass.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,\
                      content_type_conformance";

/// Test cases per operation and phase: with 16 operations the run takes about a minute and a
/// half on two busy cores (30 took 140 s).
const MAX_EXAMPLES: &str = "20";

/// A reverse stream is read at most this long (it lasts until its activation timeout).
const REQUEST_TIMEOUT_SECS: &str = "5";

/// The seed, fixed so that a run is reproducible; `WEBSESSION_SCHEMATHESIS_SEED` picks another
/// (to explore further, or to replay a run).
const DEFAULT_SEED: &str = "1";

/// The server API's key for the run (the publish operation is exercised past its key check).
const API_KEY: &str = "schemathesis-ci-key";

/// The front of the document's examples (`PublishRequest`, `RegisterRequest`), registered
/// before the run so that the example publish answers 200.
const EXAMPLE_FRONT: &str = "0d5c4f3e-6a8b-4c1d-9e2f-3a4b5c6d7e8f";
const EXAMPLE_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// A venue key (Ed25519 public key), so that the VTX exchange verifies tokens instead of
/// answering 503 for want of keys. Nobody holds its secret half.
const VENUE_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAo12CZ9D0yt3V6boEDnIUiQ1rJwsm85Sz5Y14T9WsOvA=
-----END PUBLIC KEY-----
";

/// The venv: `schemathesis-<version>` in xtask's cache directory, so it outlives `cargo clean`
/// and a new version gets a venv of its own.
fn venv() -> PathBuf {
    cache_dir().join(format!("schemathesis-{VERSION}"))
}

/// Installs schemathesis `VERSION` into its venv unless it is there; Debian's `python3` and
/// `python3-venv` first if `python3 -m venv` does not work.
pub(crate) fn ensure() -> Result<PathBuf, String> {
    let venv = venv();
    let program = venv.join("bin/schemathesis");
    let have = output(&mut cmd(&program.to_string_lossy(), &["--version"])).unwrap_or_default();
    if have.contains(VERSION) {
        println!("ok: schemathesis {VERSION}");
        return Ok(program);
    }
    if which("python3").is_none() {
        apt_install(&["python3", "python3-venv"])?;
    }
    let shown = venv.to_string_lossy().into_owned();
    // `--clear`: a venv left half-made by an interrupted install starts over. Debian's python3
    // makes venvs only with `python3-venv` (ensurepip), which a fresh machine may lack.
    let make = || run(&mut cmd("python3", &["-m", "venv", "--clear", &shown]));
    if make().is_err() {
        apt_install(&["python3-venv"])?;
        make()?;
    }
    let pip = venv.join("bin/pip");
    let pinned = format!("schemathesis=={VERSION}");
    run(&mut cmd(
        &pip.to_string_lossy(),
        &["install", "--quiet", "--disable-pip-version-check", &pinned],
    ))?;
    Ok(program)
}

/// Builds and starts the server, then runs schemathesis against its `/openapi.json`.
pub(crate) fn run_against_server() -> Result<(), String> {
    let program = ensure()?;
    run(&mut cmd("cargo", &["build", "--locked", "--quiet", "-p", "server", "--bin", "server"]))?;
    let server = start_server()?;
    register_example_front(server.address())?;
    let seed =
        std::env::var("WEBSESSION_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.to_owned());
    let spec = format!("http://{}/openapi.json", server.address());
    let key = format!("X-API-Key: {API_KEY}");
    let report = root().join("target/schemathesis/report");
    let report = report.to_string_lossy();
    let mut schemathesis = cmd(
        &program.to_string_lossy(),
        &[
            "run",
            &spec,
            "--checks",
            CHECKS,
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            REQUEST_TIMEOUT_SECS,
            "--workers",
            "2",
            "--seed",
            &seed,
            "--header",
            &key,
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            &report,
        ],
    );
    // It keeps a cache (`.schemathesis/`, `.hypothesis/`) in its working directory: not in the
    // repository's.
    schemathesis.current_dir(root().join("target/schemathesis"));
    let result = run(&mut schemathesis);
    drop(server);
    result
}

/// The server binary on a free port of 127.0.0.1, on a fresh embedded store, with the server
/// API on; killed when dropped.
fn start_server() -> Result<Service, String> {
    let (dir, data) = fresh_dir("schemathesis")?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok::<_, String>(path.to_string_lossy().into_owned())
    };
    let key_file = write("api-key", API_KEY)?;
    let venue_key = write("venue-key.pem", VENUE_KEY_PEM)?;
    let program = root().join("target/debug/server");
    let data = data.to_string_lossy();
    let mut command = cmd(
        &program.to_string_lossy(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--api-key-file",
            &key_file,
            "--venue-jwks-file",
            &venue_key,
            // Registrations are what is tested, not the limit (its 429 is documented).
            "--registrations-per-sec",
            "0",
            // Streams that schemathesis opens and never activates end sooner.
            "--activation-timeout-secs",
            "2",
        ],
    );
    command.env("RUST_LOG", "warn").env("NO_COLOR", "1");
    Service::start("schemathesis", command, dir.join("server.log"), "server: listening on http://")
}

/// `POST /web-event-front-reg/{EXAMPLE_FRONT}` with the example key (one HTTP/1.1 exchange,
/// so that xtask needs no HTTP client).
fn register_example_front(address: &str) -> Result<(), String> {
    let body = format!(r#"{{"publicKey":"{EXAMPLE_KEY}","frontUuid":"{EXAMPLE_FRONT}"}}"#);
    let request = format!(
        "POST /web-event-front-reg/{EXAMPLE_FRONT} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let failed = |e: std::io::Error| format!("registering the example front: {e}");
    let mut stream = TcpStream::connect(address).map_err(failed)?;
    stream.write_all(request.as_bytes()).map_err(failed)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(failed)?;
    if !answer.starts_with("HTTP/1.1 200") {
        return Err(format!("registering the example front answered {answer:?}"));
    }
    Ok(())
}
