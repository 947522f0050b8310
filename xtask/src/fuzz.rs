//! `cargo xtask fuzz`: runs every cargo-fuzz target of `fuzz/` for a while (nightly, libFuzzer)
//! and reports executions per target; `cargo xtask ci` runs each a few seconds where nightly is.
//!
//! The checked-in corpora are replayed on stable by ordinary tests in each crate; this is what
//! looks for new inputs. Targets run without a sanitizer (`-s none`): the workspace forbids
//! `unsafe`, so AddressSanitizer would only make each execution slower.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{cmd, output, root, run, which};

const USAGE: &str = "cargo xtask fuzz [--secs N]   (N seconds per target, default 60)";
const DEFAULT_SECS: u64 = 60;
/// Seconds per target in `cargo xtask ci`.
const CI_SECS: u64 = 5;

/// `cargo xtask fuzz [--secs N]`: new inputs join the checked-in corpus `fuzz/corpus/<target>/`
/// (run `cargo +nightly fuzz cmin -s none <target>` before committing it).
pub(crate) fn run_fuzz(args: &[String]) -> Result<(), String> {
    let secs = match args {
        [] => DEFAULT_SECS,
        [flag, n] if flag == "--secs" => n.parse().map_err(|_| USAGE.to_owned())?,
        _ => return Err(format!("usage: {USAGE}")),
    };
    if !nightly_present() {
        return Err("cargo xtask fuzz needs the nightly toolchain (rustup toolchain install \
                    nightly)"
            .to_owned());
    }
    if which("cargo-fuzz").is_none() {
        run(&mut cmd("cargo", &["install", "cargo-fuzz", "--locked"]))?;
    }
    fuzz_all(secs, None)
}

/// The short run of `cargo xtask ci`: only where nightly and cargo-fuzz are installed (CI must
/// pass without them; the stable corpus replay runs everywhere). New inputs go to a scratch
/// directory, so CI never changes the checked-in corpus.
pub(crate) fn ci_short_run() -> Result<(), String> {
    if !nightly_present() || which("cargo-fuzz").is_none() {
        println!("xtask ci: no nightly toolchain or cargo-fuzz: skipping the short fuzz run");
        return Ok(());
    }
    let scratch = root().join("target/fuzz-ci");
    fuzz_all(CI_SECS, Some(&scratch))
}

fn nightly_present() -> bool {
    output(&mut cmd("rustup", &["toolchain", "list"]))
        .is_some_and(|list| list.lines().any(|l| l.starts_with("nightly")))
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

fn cargo_fuzz(args: &[&str]) -> Command {
    let mut c = cmd("cargo", &["+nightly", "fuzz"]);
    c.args(args).current_dir(fuzz_dir());
    c
}

/// Builds once, then runs each target for `secs`; with `scratch`, new inputs go there instead
/// of into the checked-in corpus.
fn fuzz_all(secs: u64, scratch: Option<&Path>) -> Result<(), String> {
    run(&mut cargo_fuzz(&["build", "-s", "none"]))?;
    let list = output(&mut cargo_fuzz(&["list"])).ok_or("cargo fuzz list failed")?;
    let targets: Vec<&str> = list.lines().map(str::trim).filter(|t| !t.is_empty()).collect();
    let mut report = Vec::new();
    for target in &targets {
        let corpus = fuzz_dir().join("corpus").join(target);
        let mut dirs = Vec::new();
        if let Some(scratch) = scratch {
            let dir = scratch.join(target);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            dirs.push(dir);
        }
        dirs.push(corpus);
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let time = format!("-max_total_time={secs}");
        let mut args = vec!["run", "-s", "none", target];
        args.extend(dirs.iter().map(String::as_str));
        args.extend(["--", &time, "-print_final_stats=1"]);
        let mut c = cargo_fuzz(&args);
        println!("$ cargo +nightly fuzz {}", args.join(" "));
        let out = c.output().map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let execs = stat(&log, "stat::number_of_executed_units:");
        if !out.status.success() {
            eprintln!("{log}");
            return Err(format!(
                "fuzz target {target} failed (the crashing input is in fuzz/artifacts/{target}/; \
                 add it to fuzz/corpus/{target}/ once fixed)"
            ));
        }
        report.push((target.to_string(), execs.unwrap_or(0)));
    }
    println!("{:<16} {:>14} {:>10}", "target", "executions", "per sec");
    for (target, execs) in &report {
        println!("{target:<16} {execs:>14} {:>10}", execs / secs.max(1));
    }
    Ok(())
}

/// The number after `key` in libFuzzer's final statistics.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines().find_map(|l| l.trim().strip_prefix(key)).and_then(|v| v.trim().parse().ok())
}
