//! A small WebDriver client (the W3C protocol over reqwest) and a ChromeDriver child process:
//! what the browser tests and the benchmark need to load a page of the development server in
//! headless Chromium and run scripts in it, and what the end-to-end suite (`tests/`) needs on
//! top: tabs, elements, cookies, screenshots and network emulation. Not a general client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// A `chromedriver --port=0` child process, killed when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts `$CHROMEDRIVER` (default `chromedriver` on `PATH`) on a free port.
    pub fn start() -> anyhow::Result<Self> {
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let mut child = Command::new(&program)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program} (set CHROMEDRIVER to its path)"))?;
        let stdout = child.stdout.take().context("chromedriver has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // "ChromeDriver was started successfully on port 41234."
        let port = loop {
            let Some(line) = lines.next().transpose()? else {
                let _ = child.kill();
                bail!("{program} exited before it said its port");
            };
            if let Some(rest) = line.split("successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().parse::<u16>()?;
            }
        };
        // Keep reading, so that a chatty driver never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, url: format!("http://127.0.0.1:{port}") })
    }

    /// The driver's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The W3C name of the key that carries an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The flags Chromium runs with: headless, no sandbox (containers), and nothing that talks to
/// the network on its own (QUIC, background updates, sync), so that tests see only their own
/// requests. A fresh `--user-data-dir` is added per session.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// One browser session (one fresh headless Chromium profile), ended when dropped, so that a
/// failing test does not leave a browser behind.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    /// The profile directory, removed after the session ends.
    profile: PathBuf,
}

/// A reference to an element of the current page (valid until the page changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// A window (tab) of a session, by its WebDriver handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window(pub String);

/// A fresh, empty profile directory under the system's temporary directory.
fn fresh_profile() -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "websession-chromium-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the profile directory {}", dir.display()))?;
    Ok(dir)
}

impl Browser {
    /// A new headless Chromium session on `driver`. `$CHROME_BINARY` names the browser when
    /// the driver cannot find it by itself.
    pub async fn new(driver: &ChromeDriver) -> anyhow::Result<Self> {
        let profile = fresh_profile()?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&arg| arg.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut options = json!({ "args": args });
        if let Ok(binary) = std::env::var("CHROME_BINARY") {
            options["binary"] = json!(binary);
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "timeouts": {"script": 60_000, "pageLoad": 30_000},
        }}});
        let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build()?;
        let url = format!("{}/session", driver.url);
        let answer = match call(&http, reqwest::Method::POST, &url, &capabilities).await {
            Ok(answer) => answer,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(err);
            }
        };
        let session = answer["sessionId"].as_str().context("no sessionId in the answer")?;
        Ok(Self { http, session: format!("{url}/{session}"), profile })
    }

    /// Navigates the window to `url` and waits for the load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", &json!({ "url": url })).await.map(drop)
    }

    /// Runs `body` as the body of an `async` function in the page (`arguments` are `args`) and
    /// returns what it returns, or its exception as an error.
    pub async fn run(&self, body: &str, args: &[Value]) -> anyhow::Result<Value> {
        let script = format!(
            "const done = arguments[arguments.length - 1];\n\
             (async function () {{ {body} }}).apply(null, Array.from(arguments).slice(0, -1))\n\
             .then(value => done({{ ok: value === undefined ? null : value }}),\n\
                   error => done({{ error: String(error && error.stack || error) }}));"
        );
        let answer =
            self.post("/execute/async", &json!({ "script": script, "args": args })).await?;
        match answer.get("error").and_then(Value::as_str) {
            Some(error) => Err(anyhow!("script failed: {error}")),
            None => Ok(answer.get("ok").cloned().unwrap_or(Value::Null)),
        }
    }

    /// A Chrome DevTools Protocol command (ChromeDriver's `goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.post("/goog/cdp/execute", &json!({ "cmd": cmd, "params": params })).await
    }

    /// The address of the current page.
    pub async fn current_url(&self) -> anyhow::Result<String> {
        let url = self.get("/url").await?;
        url.as_str().map(str::to_owned).context("the current URL is not a string")
    }

    /// Reloads the current page and waits for the load.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        self.post("/refresh", &json!({})).await.map(drop)
    }

    /// The first element matching the CSS `selector`, or `None`.
    pub async fn find(&self, selector: &str) -> anyhow::Result<Option<Element>> {
        let body = json!({ "using": "css selector", "value": selector });
        let found = self.post("/elements", &body).await?;
        let first = found.as_array().and_then(|all| all.first());
        Ok(first.and_then(|e| e[ELEMENT_KEY].as_str()).map(|id| Element(id.to_owned())))
    }

    /// The first element matching `selector`; an error naming it if there is none.
    pub async fn element(&self, selector: &str) -> anyhow::Result<Element> {
        self.find(selector).await?.with_context(|| format!("no element matches {selector:?}"))
    }

    /// Clicks `element` as a user would (scrolled into view; refused if something covers it).
    pub async fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/click", element.0), &json!({})).await.map(drop)
    }

    /// Empties a text field.
    pub async fn clear(&self, element: &Element) -> anyhow::Result<()> {
        self.post(&format!("/element/{}/clear", element.0), &json!({})).await.map(drop)
    }

    /// Types `text` into `element`.
    pub async fn type_text(&self, element: &Element, text: &str) -> anyhow::Result<()> {
        let body = json!({ "text": text });
        self.post(&format!("/element/{}/value", element.0), &body).await.map(drop)
    }

    /// The rendered text of `element` (empty when it is hidden).
    pub async fn text(&self, element: &Element) -> anyhow::Result<String> {
        let text = self.get(&format!("/element/{}/text", element.0)).await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// A PNG of the current window's viewport, base64-encoded (as WebDriver answers it).
    pub async fn screenshot_base64(&self) -> anyhow::Result<String> {
        let shot = self.get("/screenshot").await?;
        shot.as_str().map(str::to_owned).context("the screenshot is not a string")
    }

    /// The current window.
    pub async fn window(&self) -> anyhow::Result<Window> {
        let handle = self.get("/window").await?;
        Ok(Window(handle.as_str().context("the window handle is not a string")?.to_owned()))
    }

    /// Opens a new tab (not switched to).
    pub async fn new_tab(&self) -> anyhow::Result<Window> {
        let answer = self.post("/window/new", &json!({ "type": "tab" })).await?;
        let handle = answer["handle"].as_str().context("no handle for the new window")?;
        Ok(Window(handle.to_owned()))
    }

    /// Makes `window` the one later commands act on.
    pub async fn switch_to(&self, window: &Window) -> anyhow::Result<()> {
        self.post("/window", &json!({ "handle": window.0 })).await.map(drop)
    }

    /// Resizes the current window (screenshots show its viewport).
    pub async fn set_window_size(&self, width: u32, height: u32) -> anyhow::Result<()> {
        let rect = json!({ "width": width, "height": height });
        self.post("/window/rect", &rect).await.map(drop)
    }

    /// Deletes the cookie `name` visible to the current page.
    pub async fn delete_cookie(&self, name: &str) -> anyhow::Result<()> {
        self.delete(&format!("/cookie/{name}")).await.map(drop)
    }

    /// Takes the current tab off the network (`true`) or puts it back (ChromeDriver's network
    /// emulation: the page sees `offline` and `online` events, its requests fail meanwhile).
    pub async fn set_offline(&self, offline: bool) -> anyhow::Result<()> {
        let conditions = json!({ "network_conditions": {
            "offline": offline, "latency": 0, "download_throughput": -1, "upload_throughput": -1,
        }});
        self.post("/chromium/network_conditions", &conditions).await.map(drop)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        call(&self.http, reqwest::Method::POST, &format!("{}{path}", self.session), body).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        call(&self.http, reqwest::Method::GET, &url, &Value::Null).await
    }

    async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        call(&self.http, reqwest::Method::DELETE, &url, &Value::Null).await
    }
}

impl Drop for Browser {
    /// `DELETE` the session with a plain blocking request: `Drop` cannot await, and the browser
    /// must close even when a test panics.
    fn drop(&mut self) {
        self.end_session();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// `DELETE` the session (the browser quits), waiting for the driver's answer.
    fn end_session(&self) {
        let Some(rest) = self.session.strip_prefix("http://") else { return };
        let Some((host, path)) = rest.split_once('/') else { return };
        let Ok(mut stream) = std::net::TcpStream::connect(host) else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let request =
            format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n");
        if std::io::Write::write_all(&mut stream, request.as_bytes()).is_ok() {
            // ChromeDriver keeps the connection open: read the head and the announced body.
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let _ = std::io::Read::read_exact(&mut reader, &mut vec![0; length]);
        }
    }
}

/// One WebDriver command: its `value`, or the driver's error as an error.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, url);
    if !body.is_null() {
        request = request.json(body);
    }
    let response = request.send().await.with_context(|| format!("WebDriver {url}"))?;
    let status = response.status();
    let mut answer: Value =
        response.json().await.with_context(|| format!("WebDriver {url}: not JSON"))?;
    let value = answer.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("WebDriver {url}: {status}: {value}");
    }
    Ok(value)
}
