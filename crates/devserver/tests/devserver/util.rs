//! Starting and stopping a development server in the test process.

use std::path::{Path, PathBuf};

use devserver::{Config, DevServer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A development server serving on a free port; stopped by [`Running::stop`].
pub(crate) struct Running {
    pub(crate) url: String,
    /// A handle on the server's parts (switches, counters).
    pub(crate) dev: DevServer,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    _data: tempfile::TempDir,
}

/// Starts a development server with `configure`d settings and the store in a fresh directory.
pub(crate) async fn start(configure: impl FnOnce(&mut Config)) -> Running {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::new(data.path());
    configure(&mut config);
    let dev = DevServer::open(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(devserver::run(listener, dev.clone(), async {
        let _ = stopped.await;
    }));
    Running { url, dev, stop, task, _data: data }
}

impl Running {
    /// Stops the server and waits until it has.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The assembled site (`$WEBSESSION_SITE_DIR`, default `<workspace>/target/site`), checked.
pub(crate) fn site() -> PathBuf {
    let dir = std::env::var_os("WEBSESSION_SITE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/site"));
    for file in ["sw.js", "pkg/sw.js", "pkg/websession_sw.js", "pkg/websession_sw_bg.wasm"] {
        assert!(
            dir.join(file).is_file(),
            "{} has no {file}: build the site first (`cargo xtask ci` does; `cargo xtask demo` \
             too), or name it in WEBSESSION_SITE_DIR",
            dir.display()
        );
    }
    dir
}

/// A directory with a blank test page and the site's `/sw.js` and `/pkg/` (not the demo app,
/// which registers the worker itself).
pub(crate) fn test_site() -> tempfile::TempDir {
    let site = site();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blank.html"), "<!doctype html><title>sw test</title>").unwrap();
    std::fs::copy(site.join("sw.js"), dir.path().join("sw.js")).unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    for entry in std::fs::read_dir(site.join("pkg")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("pkg").join(entry.file_name())).unwrap();
    }
    dir
}
