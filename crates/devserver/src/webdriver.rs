//! A small WebDriver client (the W3C protocol over reqwest) and a ChromeDriver child process:
//! what the browser tests and the benchmark need to load a page of the development server in
//! headless Chromium and run scripts in it. Not a general client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
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

/// One browser session (one fresh headless Chromium profile), ended when dropped, so that a
/// failing test does not leave a browser behind.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
}

impl Browser {
    /// A new headless Chromium session on `driver`. `$CHROME_BINARY` names the browser when
    /// the driver cannot find it by itself.
    pub async fn new(driver: &ChromeDriver) -> anyhow::Result<Self> {
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-extensions"],
        });
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
        let answer = call(&http, reqwest::Method::POST, &url, &capabilities).await?;
        let session = answer["sessionId"].as_str().context("no sessionId in the answer")?;
        Ok(Self { http, session: format!("{url}/{session}") })
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

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        call(&self.http, reqwest::Method::POST, &format!("{}{path}", self.session), body).await
    }
}

impl Drop for Browser {
    /// `DELETE` the session with a plain blocking request: `Drop` cannot await, and the browser
    /// must close even when a test panics.
    fn drop(&mut self) {
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
