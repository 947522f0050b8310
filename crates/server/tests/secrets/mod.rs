//! Secrets at rest and in messages: the data directory and the files the server makes in it
//! are readable by its user only, and a Redis password never shows in an error.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use server::redis_link::RedisTarget;
use server::tokens::{EnterpriseStoreConfig, SessionStoreConfig};
use server::{AppState, Config};

use crate::util::TestServer;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_dir_is_0700_and_the_database_wal_shm_and_signing_key_are_0600() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let server = TestServer::start_with(|config| config.data_dir = dir.clone()).await;
    // A write, so that the WAL surely exists.
    let mut front = loadgen::Front::generate(&server.client());
    front.register().await.unwrap();

    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    for name in
        ["server.sqlite3", "server.sqlite3-wal", "server.sqlite3-shm", "eid-signing-key.pem"]
    {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
}

#[tokio::test]
async fn a_redis_password_never_appears_in_the_error_of_a_server_that_cannot_connect() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://operator:hunter2-secret@127.0.0.1:{port}/0");
    for enterprise in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        if enterprise {
            config.tokens.enterprise_store = EnterpriseStoreConfig::Redis {
                target: RedisTarget::Single(url.clone()),
                key_prefix: String::new(),
            };
        } else {
            config.tokens.session_store =
                SessionStoreConfig::Redis { target: RedisTarget::Single(url.clone()) };
        }
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let err = AppState::open(config).await.map(|_| ()).unwrap_err();
        let message = format!("{err:#} {err:?}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("redis://operator:***@127.0.0.1"), "{message}");
    }
}
