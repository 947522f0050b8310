//! The binary's configuration file: flag > environment > file > default, `config check` and
//! `config default`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::util::within;

fn server() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command.env_remove("SERVER_LISTEN").env_remove("SERVER_CONFIG").env("RUST_BACKTRACE", "0");
    command
}

/// Starts the server with `args` (and `SERVER_LISTEN` if given); the address it listens on.
async fn listening_on(dir: &Path, args: &[&str], env_listen: Option<&str>) -> String {
    let mut command = server();
    command.arg("--data-dir").arg(dir.join("data")).args(args);
    if let Some(listen) = env_listen {
        command.env("SERVER_LISTEN", listen);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = within(async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the server printed its URL");
            if let Some(url) = line.strip_prefix("server: listening on http://") {
                return url.to_owned();
            }
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    url.rsplit_once(':').unwrap().0.to_owned()
}

// Each source names another loopback address (port 0), so the address the server listens on
// tells which source won.
#[tokio::test]
async fn the_file_sets_only_what_neither_a_flag_nor_the_environment_sets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    std::fs::write(&file, "listen = \"127.0.0.2:0\"\n").unwrap();
    let config = file.to_str().unwrap();
    let flag = "--listen=127.0.0.4:0";
    let env = Some("127.0.0.3:0");
    assert_eq!(listening_on(dir.path(), &["--config", config], None).await, "127.0.0.2");
    assert_eq!(listening_on(dir.path(), &["--config", config], env).await, "127.0.0.3");
    assert_eq!(listening_on(dir.path(), &["--config", config, flag], None).await, "127.0.0.4");
    assert_eq!(listening_on(dir.path(), &["--config", config, flag], env).await, "127.0.0.4");
}

fn run(args: &[&str]) -> Output {
    server().args(args).output().unwrap()
}

#[test]
fn config_check_takes_the_default_file_with_every_key_set_and_refuses_mistakes() {
    let default = run(&["config", "default"]);
    assert!(default.status.success());
    let default = String::from_utf8(default.stdout).unwrap();
    let parsed: toml::Table = toml::from_str(&default).unwrap();
    assert!(parsed.is_empty(), "every key is commented out");
    for key in ["listen", "header-read-timeout-secs", "stream-buffer", "refresh-token-in-body"] {
        assert!(default.contains(&format!("\n#{key} = ")), "{key} is listed with its default");
    }
    assert!(default.contains("\n# redis-url = "), "a key without default is listed too");

    let dir = tempfile::tempdir().unwrap();
    let every_key = dir.path().join("every-key.toml");
    let uncommented: String = default
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    std::fs::write(&every_key, uncommented).unwrap();
    let checked = run(&["config", "check", every_key.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{stderr}");

    for (text, says) in [
        ("bogus = 1\n", "unknown key \"bogus\""),
        ("stream-buffer = \"many\"\n", "--stream-buffer"),
        ("refresh-token-in-body = \"yes\"\n", "expected a boolean"),
        ("listen = [\n", "TOML parse error"),
        (
            "redis-url = \"redis://a:6379\"\nredis-cluster-url = [\"redis://b:7000\"]\n",
            "cannot be used with",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let checked = run(&["config", "check", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert!(!checked.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(says), "{text:?}: {stderr}");
    }
}
