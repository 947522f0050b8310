//! The test bed: a development server on a free port over the assembled site, the demo app in
//! headless Chromium, polling with deadlines that say what they saw, screenshots under
//! `target/e2e/`, and a `redis-server` of the suite's own.

use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use devserver::webdriver::{Browser, ChromeDriver, Window};
use devserver::{Config, DevServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Mutex, MutexGuard, oneshot};
use tokio::task::JoinHandle;

/// How long a condition may take to come true unless a step says otherwise.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);
/// How often a condition is looked at.
const POLL: Duration = Duration::from_millis(100);

static SERIAL: Mutex<()> = Mutex::const_new(());

/// One browser scenario at a time: on two cores, parallel Chromium sessions make each other's
/// timings (heartbeats, back-offs, token lifetimes) flaky. Hold the guard for the whole test.
pub(crate) async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The assembled site, from `WEBSESSION_SITE_DIR`; an error that says how to get it otherwise.
pub(crate) fn site_dir() -> anyhow::Result<PathBuf> {
    let Some(dir) = std::env::var_os("WEBSESSION_SITE_DIR").map(PathBuf::from) else {
        bail!(
            "WEBSESSION_SITE_DIR is not set: the end-to-end suite serves the assembled site. \
             Run it through `cargo xtask ci` (which builds the site and sets the variable), or \
             after `cargo xtask ci`/`cargo xtask demo` with \
             `WEBSESSION_SITE_DIR=target/site cargo test -p e2e`"
        );
    };
    for file in [
        "sw.js",
        "pkg/websession.js",
        "pkg/websession_bg.wasm",
        "pkg/websession_sw.js",
        "pkg/websession_sw_bg.wasm",
        "index.html",
        "app.js",
    ] {
        if !dir.join(file).is_file() {
            bail!(
                "WEBSESSION_SITE_DIR={} has no {file}: assemble the site with `cargo xtask ci`",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// The consumer app built by `cargo xtask consumer` (the packed package installed from npm's
/// point of view, built with Vite, the package's worker as `/sw.js`), from
/// `WEBSESSION_CONSUMER_DIR`; an error that says how to get it otherwise.
pub(crate) fn consumer_dir() -> anyhow::Result<PathBuf> {
    let Some(dir) = std::env::var_os("WEBSESSION_CONSUMER_DIR").map(PathBuf::from) else {
        bail!(
            "WEBSESSION_CONSUMER_DIR is not set: the consumer scenario serves the app built from \
             the packed npm package. Run it through `cargo xtask consumer` or `cargo xtask ci` \
             (which build it and set the variable)"
        );
    };
    // The app's own module and wasm are bundled by Vite under assets/; the worker and the two
    // files it loads are copied to the root as the package README says.
    for file in ["index.html", "sw.js", "websession_sw.js", "websession_sw_bg.wasm"] {
        if !dir.join(file).is_file() {
            bail!(
                "WEBSESSION_CONSUMER_DIR={} has no {file}: build it with `cargo xtask consumer`",
                dir.display()
            );
        }
    }
    Ok(dir)
}

/// The workspace's target directory (`CARGO_TARGET_DIR` if set).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// `target/e2e/<what>`, emptied.
fn fresh_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = target_dir().join("e2e").join(what);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Polls `probe` every 100 ms until it gives `Ok(Some(value))`, for at most `deadline`.
/// `Ok(None)` means "not yet", and `seen` tells what the last probe saw, for the error.
pub(crate) async fn poll<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let started = Instant::now();
    loop {
        let seen = match probe().await? {
            Ok(value) => return Ok(value),
            Err(seen) => seen,
        };
        if started.elapsed() > deadline {
            bail!("waited {:.0?} for {what}; last saw: {}", deadline, clip(&seen));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `text` cut to a readable length for an error message.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 1500;
    let text = text.trim();
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        format!("{:?}…", text.chars().take(MAX).collect::<String>())
    }
}

/// A development server (backend, venue stand-in, the site) with its test controls, on a free
/// port of `127.0.0.1`, its store in `target/e2e/data/<name>`.
pub(crate) struct Server {
    pub(crate) url: String,
    /// The server's parts (the stand-in's settings).
    pub(crate) dev: DevServer,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    data: PathBuf,
}

impl Server {
    /// Starts a server on a fresh store, with `configure`d settings on top of the defaults.
    pub(crate) async fn start(
        name: &str,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        Self::start_serving(name, site_dir()?, configure).await
    }

    /// [`Server::start`] with `site` as the static files instead of the assembled demo.
    pub(crate) async fn start_serving(
        name: &str,
        site: PathBuf,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let data = fresh_dir(&format!("data/{name}"))?;
        let mut config = Config::new(&data).with_static_dir(site);
        config.test_controls = true;
        configure(&mut config);
        let dev = DevServer::open(config).await.context("the development server does not open")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(devserver::run(listener, dev.clone(), async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { url, dev, http, stop: Some(stop), task: Some(task), data })
    }

    /// Stops the server, waits until it has, and removes its store.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.context("the server task panicked")?.context("the server failed")?;
        }
        let _ = std::fs::remove_dir_all(&self.data);
        Ok(())
    }

    /// `POST {path}` with a JSON body: the JSON answer (`null` for none), or an error with the
    /// status and body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("POST {path}: the body"))?;
        if !status.is_success() {
            bail!("POST {path} {body} answered {status}: {}", clip(&text));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: not JSON: {text}"))
    }

    /// Publishes a reverse event `server-note` with `{"mark": mark}` to the whole front, or to
    /// one of its sessions.
    pub(crate) async fn emit(
        &self,
        front: &str,
        session: Option<&str>,
        mark: &str,
    ) -> anyhow::Result<()> {
        let mut body =
            json!({ "frontUuid": front, "name": "server-note", "data": { "mark": mark } });
        if let Some(session) = session {
            body["sessionUuid"] = json!(session);
        }
        self.post("/__devserver/emit", &body).await.map(drop)
    }

    /// [`Server::emit`], retried until the backend takes it (it is restarting, or has not seen
    /// the front again yet after a wipe).
    pub(crate) async fn emit_when_accepted(&self, front: &str, mark: &str) -> anyhow::Result<()> {
        let what = format!("the backend to accept the event {mark:?}");
        poll(&what, Duration::from_secs(30), || async {
            Ok(self.emit(front, None, mark).await.map_err(|e| format!("{e:#}")))
        })
        .await
    }

    /// A one-time login link (`/auth?token=…`, absolute) for `user` with `permissions`.
    pub(crate) async fn login_link(
        &self,
        user: &str,
        permissions: &[&str],
    ) -> anyhow::Result<String> {
        self.login_link_valid_for(user, permissions, 3600).await
    }

    /// Like [`Server::login_link`], for a login session valid `secs` seconds.
    pub(crate) async fn login_link_valid_for(
        &self,
        user: &str,
        permissions: &[&str],
        secs: u64,
    ) -> anyhow::Result<String> {
        let body = json!({ "user": user, "permissions": permissions, "validForSecs": secs });
        let minted = self.post("/__devserver/mint", &body).await?;
        let link = minted["loginUrl"].as_str().context("no loginUrl from mint")?;
        Ok(if link.starts_with("http") { link.to_owned() } else { format!("{}{link}", self.url) })
    }

    /// Restarts the backend (on a wiped store if `wipe`), down for `down_ms`.
    pub(crate) async fn restart(&self, wipe: bool, down_ms: u64) -> anyhow::Result<()> {
        self.post("/__devserver/restart", &json!({ "wipe": wipe, "downMs": down_ms }))
            .await
            .map(drop)
    }

    /// Sets the venue stand-in's fault switches (`{"dashboard": "fail", …}`).
    pub(crate) async fn venue_faults(&self, faults: Value) -> anyhow::Result<()> {
        self.post("/__standin/faults", &faults).await.map(drop)
    }

    /// `POST /api/auth/refresh` with `refreshToken=<token>`, as anyone holding a copy of the
    /// cookie could: the status and the error code of the answer.
    pub(crate) async fn replay_refresh(&self, token: &str) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .post(format!("{}/api/auth/refresh", self.url))
            .header("Cookie", format!("refreshToken={token}"))
            .send()
            .await
            .context("POST /api/auth/refresh")?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Ok((status, body["error"].as_str().unwrap_or_default().to_owned()))
    }
}

/// The demo app in one headless Chromium profile, with the scenario's name and step for the
/// messages of failures and the names of screenshots.
pub(crate) struct App {
    pub(crate) browser: Browser,
    // Dropped after `browser`: the driver outlives the session it serves.
    _driver: ChromeDriver,
    base: String,
    scenario: String,
    /// `(step, tab)` now, for messages.
    at: StdMutex<(String, String)>,
    shots: PathBuf,
    shot_no: AtomicU32,
}

impl App {
    /// A fresh browser profile for `scenario`, on `server`'s origin (nothing loaded yet).
    pub(crate) async fn start(server: &Server, scenario: &str, slug: &str) -> anyhow::Result<Self> {
        Self::start_at(&server.url, scenario, slug).await
    }

    /// [`App::start`] on the origin `base` (a load balancer in front of servers).
    pub(crate) async fn start_at(base: &str, scenario: &str, slug: &str) -> anyhow::Result<Self> {
        let shots = fresh_dir(slug)?;
        let driver = ChromeDriver::start()?;
        let browser = Browser::new(&driver).await.context("no Chromium session")?;
        // Tall enough for the whole demo page in one screenshot.
        browser.set_window_size(1280, 2000).await?;
        Ok(Self {
            browser,
            _driver: driver,
            base: base.to_owned(),
            scenario: scenario.to_owned(),
            at: StdMutex::new(("start".to_owned(), "tab 1".to_owned())),
            shots,
            shot_no: AtomicU32::new(0),
        })
    }

    /// Names the step that follows (in messages and on stderr).
    pub(crate) fn step(&self, step: &str) {
        eprintln!("e2e [{}] {step}", self.scenario);
        self.at.lock().unwrap_or_else(|p| p.into_inner()).0 = step.to_owned();
    }

    fn whereabouts(&self) -> String {
        let at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        format!("scenario {:?}, step {:?}, {}", self.scenario, at.0, at.1)
    }

    /// Makes `tab` (named `label` in messages) the one later commands act on.
    pub(crate) async fn switch(&self, tab: &Window, label: &str) -> anyhow::Result<()> {
        self.browser.switch_to(tab).await?;
        self.at.lock().unwrap_or_else(|p| p.into_inner()).1 = label.to_owned();
        Ok(())
    }

    /// Loads `path` of the server (or an absolute URL) in the current tab.
    pub(crate) async fn open(&self, path: &str) -> anyhow::Result<()> {
        let url =
            if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        self.browser
            .goto(&url)
            .await
            .with_context(|| format!("{}: loading {url}", self.whereabouts()))
    }

    /// The text of the first element matching `selector`, `None` if there is none.
    pub(crate) async fn text(&self, selector: &str) -> anyhow::Result<Option<String>> {
        let Some(element) = self.browser.find(selector).await? else { return Ok(None) };
        self.browser.text(&element).await.map(Some)
    }

    /// Waits until the text of `selector` satisfies `ok` (described as `what`); its text. A
    /// page that is loading or replacing the element is looked at again.
    pub(crate) async fn wait_for(
        &self,
        selector: &str,
        what: &str,
        deadline: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let description = format!("{selector} to show {what}");
        poll(&description, deadline, || async {
            Ok(match self.text(selector).await {
                Ok(Some(text)) if ok(&text) => Ok(text),
                Ok(Some(text)) => Err(text),
                Ok(None) => Err(format!("no element {selector}")),
                Err(err) => Err(format!("no answer: {err:#}")),
            })
        })
        .await
        .with_context(|| self.whereabouts())
    }

    /// Waits until the text of `selector` contains `needle`; its text.
    pub(crate) async fn wait_text(&self, selector: &str, needle: &str) -> anyhow::Result<String> {
        self.wait_for(selector, &format!("{needle:?}"), DEADLINE, |text| text.contains(needle))
            .await
    }

    /// Waits until the text of `selector` is `exactly` that.
    pub(crate) async fn wait_exact(&self, selector: &str, exactly: &str) -> anyhow::Result<String> {
        self.wait_for(selector, &format!("exactly {exactly:?}"), DEADLINE, |text| text == exactly)
            .await
    }

    /// The text of `selector`, which must be there.
    pub(crate) async fn read(&self, selector: &str) -> anyhow::Result<String> {
        self.text(selector)
            .await?
            .with_context(|| format!("{}: no element {selector}", self.whereabouts()))
    }

    /// Clicks the first element matching `selector`.
    pub(crate) async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let element = self.browser.element(selector).await.with_context(|| self.whereabouts())?;
        self.browser
            .click(&element)
            .await
            .with_context(|| format!("{}: clicking {selector}", self.whereabouts()))
    }

    /// Replaces the text of the field `selector` with `text`, typed.
    pub(crate) async fn fill(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let element = self.browser.element(selector).await.with_context(|| self.whereabouts())?;
        self.browser.clear(&element).await?;
        self.browser.type_text(&element, text).await
    }

    /// Runs `body` as an async function in the page (what a user cannot do by hand).
    pub(crate) async fn script(&self, body: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.browser.run(body, args).await.with_context(|| self.whereabouts())
    }

    /// Saves a screenshot of the current tab as `target/e2e/<scenario>/<NN>-<name>.png`.
    pub(crate) async fn shot(&self, name: &str) -> anyhow::Result<()> {
        let png = base64::engine::general_purpose::STANDARD
            .decode(self.browser.screenshot_base64().await?)
            .context("the screenshot is not base64")?;
        let n = self.shot_no.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.shots.join(format!("{n:02}-{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The scenario's outcome: on failure a `FAILED` screenshot is saved and the error says
    /// which scenario failed.
    pub(crate) async fn finish(&self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(err) => {
                let saved = self.shot("FAILED").await.map_or_else(
                    |e| format!("(no screenshot: {e:#})"),
                    |()| format!("(screenshot in {})", self.shots.display()),
                );
                Err(err.context(format!("e2e scenario {:?} failed {saved}", self.scenario)))
            }
        }
    }

    /// The refresh-token cookie the browser holds (`HttpOnly`, path `/api/auth`), read through
    /// the DevTools protocol as page scripts cannot: `(value, httpOnly)`.
    pub(crate) async fn refresh_cookie(&self) -> anyhow::Result<Option<(String, bool)>> {
        let url = format!("{}/api/auth/refresh", self.base);
        let answer = self.browser.cdp("Network.getCookies", json!({ "urls": [url] })).await?;
        let cookies = answer["cookies"].as_array().cloned().unwrap_or_default();
        Ok(cookies.iter().find(|c| c["name"] == "refreshToken").map(|c| {
            (c["value"].as_str().unwrap_or_default().to_owned(), c["httpOnly"] == json!(true))
        }))
    }
}

/// A `redis-server` of the suite's own on a free port, without persistence; stopped when
/// dropped.
pub(crate) struct Redis {
    child: Child,
    addr: String,
}

impl Redis {
    /// Starts `$REDIS_SERVER` (default `redis-server`) and waits until it answers `PING`.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(&program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program} (install redis-server)"))?;
        // Keep its log drained, so a chatty server never blocks on a full pipe.
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || BufReader::new(out).lines().for_each(drop));
        }
        let redis = Self { child, addr: format!("127.0.0.1:{port}") };
        poll("redis-server to answer PING", Duration::from_secs(10), || async {
            Ok(match redis.command(&["PING"]).await {
                Ok(reply) if reply == "+PONG" => Ok(()),
                Ok(reply) => Err(reply),
                Err(e) => Err(format!("{e:#}")),
            })
        })
        .await?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// One command; its reply's first line (`+PONG`, `:3`, …).
    pub(crate) async fn command(&self, parts: &[&str]) -> anyhow::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(&self.addr).await?;
        let mut request = format!("*{}\r\n", parts.len());
        for part in parts {
            request.push_str(&format!("${}\r\n{part}\r\n", part.len()));
        }
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        while !reply.ends_with(b"\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .map_err(|_| anyhow!("redis-server did not answer"))??;
            if n == 0 {
                bail!("redis-server closed the connection");
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&reply).lines().next().unwrap_or_default().to_owned())
    }

    /// The number of keys (`DBSIZE`).
    pub(crate) async fn keys(&self) -> anyhow::Result<u64> {
        let reply = self.command(&["DBSIZE"]).await?;
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("DBSIZE answered {reply}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A development server on a runtime of its own, so that [`Killable::kill`] can end it the way
/// `kill -9` ends a process: every task and connection dropped at once, nothing said to the
/// shared store.
pub(crate) struct Killable {
    pub(crate) url: String,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    data: PathBuf,
}

impl Killable {
    /// Starts it on a fresh store in `target/e2e/data/<name>`, with `configure`d settings.
    pub(crate) async fn start(
        name: &str,
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let data = fresh_dir(&format!("data/{name}"))?;
        let mut config = Config::new(&data).with_static_dir(site_dir()?);
        config.test_controls = true;
        configure(&mut config);
        let (started, url) = oneshot::channel::<anyhow::Result<String>>();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e.into()));
                    return;
                }
            };
            let url = runtime.block_on(async {
                let dev = DevServer::open(config).await?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let url = format!("http://{}", listener.local_addr()?);
                tokio::spawn(devserver::run(listener, dev, std::future::pending()));
                anyhow::Ok(url)
            });
            let _ = started.send(url);
            // Until killed (or dropped): then every task goes, connections close unanswered.
            let _ = killed.recv();
            runtime.shutdown_background();
        });
        let url = url.await.context("the killable server's thread died")??;
        Ok(Self { url, kill: Some(kill), thread: Some(thread), data })
    }

    /// Ends it at once, as `kill -9` would.
    pub(crate) fn kill(&mut self) {
        drop(self.kill.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A real nginx (Debian's `nginx-light`) on a free port: the venue stand-in's paths and the test
/// controls go to `venue` alone (the stand-in keeps its sign-ins in memory), everything else
/// round-robin to `backends`, reverse streams unbuffered, as in `deploy/nginx.conf`.
pub(crate) struct Nginx {
    pub(crate) url: String,
    child: Child,
}

impl Nginx {
    pub(crate) async fn start(venue: &str, backends: &[&str]) -> anyhow::Result<Self> {
        let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = fresh_dir(&format!("nginx/{port}"))?;
        let host = |url: &str| url.trim_start_matches("http://").to_owned();
        let servers: String = backends
            .iter()
            .map(|b| format!("server {} max_fails=1 fail_timeout=5s;\n", host(b)))
            .collect();
        let tmp = dir.display();
        let conf = format!(
            "pid {tmp}/nginx.pid;\nerror_log stderr warn;\ndaemon off;\nevents {{}}\nhttp {{\n\
             access_log off;\nclient_body_temp_path {tmp}/body;\nproxy_temp_path {tmp}/proxy;\n\
             fastcgi_temp_path {tmp}/fastcgi;\nuwsgi_temp_path {tmp}/uwsgi;\nscgi_temp_path {tmp}/scgi;\n\
             upstream backends {{\n{servers}keepalive 16;\n}}\n\
             upstream venue {{\nserver {venue};\n}}\n\
             server {{\nlisten 127.0.0.1:{port};\n\
             proxy_http_version 1.1;\nproxy_set_header Connection \"\";\nproxy_set_header Host $http_host;\n\
             location ~ ^/(Account|Dashboard|Auth|Venue|__standin|__devserver)(/|$) {{ proxy_pass http://venue; }}\n\
             location /web-event-stream-open/ {{ proxy_pass http://backends; proxy_buffering off; proxy_read_timeout 1h; proxy_next_upstream off; }}\n\
             location / {{ proxy_pass http://backends; proxy_next_upstream error timeout http_502; }}\n\
             }}\n}}\n",
            venue = host(venue),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start nginx (install nginx-light: cargo xtask install)")?;
        let nginx = Self { url: format!("http://127.0.0.1:{port}"), child };
        poll("nginx to listen", Duration::from_secs(10), || async {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|e| e.to_string()))
        })
        .await?;
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // With its workers: a killed master leaves them serving its port.
        loadgen::stop_tree(&mut self.child);
    }
}
