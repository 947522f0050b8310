//! The worker's settings: where the venue and the server are, how to find the XSRF token, and the
//! timing of the token chain.
//!
//! A site passes them as query parameters of the registration URL
//! (`navigator.serviceWorker.register("/sw.js?venueUrl=https://venue.example", …)`) or in a JSON
//! file named by the `config` parameter, whose keys are the same; query parameters win over the
//! file. Unknown keys and bad values are reported and skipped, so one typo never stops the
//! worker: it keeps the default of that setting.

use std::fmt;
use std::time::Duration;

use protocol::json::{self, Value};

/// The default dashboard path, where the XSRF token is scraped.
pub const DEFAULT_DASHBOARD_PATH: &str = "/Dashboard";
/// The default path of the venue JWT endpoint.
pub const DEFAULT_AUTHORIZE_PATH: &str = "/Auth/Authorize";
/// The default XSRF request header.
pub const DEFAULT_XSRF_HEADER: &str = "X-XSRF-TOKEN";
/// The default margin before `exp` at which a token counts as expired.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(60);
/// The default timeout of each hop of the chain.
pub const DEFAULT_HOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the XSRF token sits in the dashboard HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsrfSource {
    /// The `value` of `<input name="…">` (ASP.NET's hidden `__RequestVerificationToken`).
    Input(String),
    /// The `content` of `<meta name="…">` (`csrf-token` in many frameworks).
    Meta(String),
}

impl XsrfSource {
    /// Parses `input:NAME` or `meta:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = text.trim().split_once(':').unwrap_or(("", ""));
        match (kind.trim(), name.trim()) {
            (_, "") => Err(format!("{text:?}: expected input:NAME or meta:NAME")),
            ("input", name) => Ok(Self::Input(name.to_owned())),
            ("meta", name) => Ok(Self::Meta(name.to_owned())),
            _ => Err(format!("{text:?}: expected input:NAME or meta:NAME")),
        }
    }
}

impl fmt::Display for XsrfSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(name) => write!(f, "input:{name}"),
            Self::Meta(name) => write!(f, "meta:{name}"),
        }
    }
}

/// When a new version of the worker takes over from the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateMode {
    /// As soon as it is installed (`skipWaiting()`); the open tabs are claimed at activation.
    #[default]
    Immediate,
    /// At the next navigation of a tab (or when a page posts `{type: "skip-waiting"}`).
    Navigation,
}

/// Every setting of the worker. Build it with `Settings { field: …, ..Settings::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `venueUrl`: the venue's base URL; `None` for the worker's own origin.
    pub venue_url: Option<String>,
    /// `dashboardPath`: the page with the XSRF token, relative to the venue URL.
    pub dashboard_path: String,
    /// `authorizePath`: the venue JWT endpoint, relative to the venue URL.
    pub authorize_path: String,
    /// `xsrfSources`: where to look for the XSRF token, in order (`input:NAME,meta:NAME`).
    pub xsrf_sources: Vec<XsrfSource>,
    /// `xsrfHeader`: the header that carries the XSRF token to the authorize endpoint.
    pub xsrf_header: String,
    /// `serverUrl`: our backend's base URL (registration, VTX); `None` for the worker's origin.
    pub server_url: Option<String>,
    /// `vtxUrl`: the token exchange, relative to the server URL (or absolute).
    pub vtx_url: String,
    /// `marginSecs`: tokens count as expired this long before their `exp`.
    pub margin: Duration,
    /// `hopTimeoutMs`: how long each hop of the chain may take.
    pub hop_timeout: Duration,
    /// `update`: `immediate` or `navigation`.
    pub update: UpdateMode,
    /// `config`: the URL of a JSON file with more settings (read by the worker at start).
    pub config_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            venue_url: None,
            dashboard_path: DEFAULT_DASHBOARD_PATH.to_owned(),
            authorize_path: DEFAULT_AUTHORIZE_PATH.to_owned(),
            xsrf_sources: vec![
                XsrfSource::Input("__RequestVerificationToken".to_owned()),
                XsrfSource::Meta("csrf-token".to_owned()),
            ],
            xsrf_header: DEFAULT_XSRF_HEADER.to_owned(),
            server_url: None,
            vtx_url: protocol::paths::VTX_TOKEN.to_owned(),
            margin: DEFAULT_MARGIN,
            hop_timeout: DEFAULT_HOP_TIMEOUT,
            update: UpdateMode::Immediate,
            config_url: None,
        }
    }
}

/// Query parameters the shim reads itself; the settings parser passes over them.
const SHIM_KEYS: &[&str] = &["v", "version"];

impl Settings {
    /// Applies one `key=value`. Unknown keys and bad values are errors that leave `self` as it
    /// was; the caller reports them.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        let text = || value.trim().to_owned();
        let url = || (!value.trim().is_empty()).then(text);
        match key {
            "venueUrl" => self.venue_url = url(),
            "dashboardPath" => self.dashboard_path = non_empty(key, value)?,
            "authorizePath" => self.authorize_path = non_empty(key, value)?,
            "xsrfSources" => {
                let sources: Vec<XsrfSource> = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(XsrfSource::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("xsrfSources: {e}"))?;
                if sources.is_empty() {
                    return Err("xsrfSources: at least one source is needed".to_owned());
                }
                self.xsrf_sources = sources;
            }
            "xsrfHeader" => {
                let name = value.trim();
                let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                if name.is_empty() || !name.chars().all(token) {
                    return Err(format!("xsrfHeader: {value:?} is not a header name"));
                }
                self.xsrf_header = name.to_owned();
            }
            "serverUrl" => self.server_url = url(),
            "vtxUrl" => self.vtx_url = non_empty(key, value)?,
            "marginSecs" => {
                let secs: u64 = value.trim().parse().map_err(|_| {
                    format!("marginSecs: {value:?} is not a whole number of seconds")
                })?;
                self.margin = Duration::from_secs(secs);
            }
            "hopTimeoutMs" => {
                let millis: u64 =
                    value.trim().parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
                        format!("hopTimeoutMs: {value:?} is not a positive number")
                    })?;
                self.hop_timeout = Duration::from_millis(millis);
            }
            "update" => {
                self.update = match value.trim() {
                    "immediate" => UpdateMode::Immediate,
                    "navigation" => UpdateMode::Navigation,
                    _ => return Err(format!("update: {value:?} is not immediate or navigation")),
                }
            }
            "config" => self.config_url = url(),
            key if SHIM_KEYS.contains(&key) => {}
            _ => return Err(format!("unknown setting {key:?}")),
        }
        Ok(())
    }

    /// Applies every parameter of a URL query (`?a=b&c=d`, the `?` optional); returns the
    /// problems found.
    pub fn apply_query(&mut self, query: &str) -> Vec<String> {
        let query = query.strip_prefix('?').unwrap_or(query);
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                self.apply(&percent_decode(key), &percent_decode(value)).err()
            })
            .collect()
    }

    /// Applies the settings of a JSON object (the `config` file); returns the problems found.
    /// Values may be strings, numbers or booleans; `xsrfSources` may also be an array.
    pub fn apply_json(&mut self, json: &str) -> Vec<String> {
        let fields = match json::from_str::<Value>(json) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return vec!["the settings file is not a JSON object".to_owned()],
            Err(err) => return vec![format!("the settings file is not JSON: {err}")],
        };
        // `json::to_string`, not `Value`'s `Display`, which is serde_json's printer.
        let text = |value: &Value| match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(_) | Value::Bool(_) => json::to_string(value).ok(),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str())
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            _ => None,
        };
        fields
            .iter()
            .filter_map(|(key, value)| match text(value) {
                Some(value) => self.apply(key, &value).err(),
                None => Some(format!(
                    "{key}: unsupported JSON value {}",
                    json::to_string(value).unwrap_or_default()
                )),
            })
            .collect()
    }

    /// The absolute URLs of the hops, for a worker at `origin` (`scheme://host:port`).
    pub fn endpoints(&self, origin: &str) -> Endpoints {
        let venue = self.venue_url.as_deref().unwrap_or(origin);
        let server = self.server_url.as_deref().unwrap_or(origin);
        Endpoints {
            dashboard: join(venue, &self.dashboard_path),
            authorize: join(venue, &self.authorize_path),
            vtx: join(server, &self.vtx_url),
            server: server.trim_end_matches('/').to_owned(),
        }
    }
}

/// The absolute URLs the chain calls, resolved from [`Settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `GET` for the XSRF token.
    pub dashboard: String,
    /// `GET` for the venue JWT.
    pub authorize: String,
    /// `GET` for the EID JWT.
    pub vtx: String,
    /// Our backend's base URL, without a trailing slash (registration).
    pub server: String,
}

/// `path` under `base`, unless `path` is an absolute URL itself. A base with a path keeps it:
/// `https://v.example/app` + `/Dashboard` is `https://v.example/app/Dashboard`.
fn join(base: &str, path: &str) -> String {
    if path.contains("://") {
        return path.to_owned();
    }
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

fn non_empty(key: &str, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{key}: must not be empty"));
    }
    Ok(value.to_owned())
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte; bytes that are
/// not UTF-8 become U+FFFD, as `URLSearchParams` does.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    // Two hex digits are at most 255.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::default();
        assert_eq!(
            s.endpoints("https://app.example"),
            Endpoints {
                dashboard: "https://app.example/Dashboard".to_owned(),
                authorize: "https://app.example/Auth/Authorize".to_owned(),
                vtx: "https://app.example/vtx/token".to_owned(),
                server: "https://app.example".to_owned(),
            }
        );
        assert_eq!(s.xsrf_header, "X-XSRF-TOKEN");
        assert_eq!(s.margin, Duration::from_secs(60));
        assert_eq!(s.hop_timeout, Duration::from_secs(10));
        assert_eq!(s.update, UpdateMode::Immediate);
    }

    #[test]
    fn query_parameters_are_decoded_and_applied() {
        let mut s = Settings::default();
        let problems = s.apply_query(
            "?venueUrl=https%3A%2F%2Fvenue.example%2Fapp%2F&xsrfSources=meta:x-csrf,input:tok\
             &xsrfHeader=X-CSRF&marginSecs=5&hopTimeoutMs=250&update=navigation&v=3",
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(s.venue_url.as_deref(), Some("https://venue.example/app/"));
        assert_eq!(
            s.xsrf_sources,
            vec![XsrfSource::Meta("x-csrf".to_owned()), XsrfSource::Input("tok".to_owned())]
        );
        assert_eq!(s.xsrf_header, "X-CSRF");
        assert_eq!(s.margin, Duration::from_secs(5));
        assert_eq!(s.hop_timeout, Duration::from_millis(250));
        assert_eq!(s.update, UpdateMode::Navigation);
        let e = s.endpoints("https://app.example");
        assert_eq!(e.dashboard, "https://venue.example/app/Dashboard");
        assert_eq!(e.vtx, "https://app.example/vtx/token");
    }

    #[test]
    fn bad_values_are_reported_and_keep_the_default() {
        let mut s = Settings::default();
        let problems = s.apply_query(
            "marginSecs=soon&hopTimeoutMs=0&update=later&xsrfHeader=a b&nope=1&xsrfSources=div:x",
        );
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn json_files_take_strings_numbers_and_arrays() {
        let mut s = Settings::default();
        let problems = s.apply_json(
            r#"{"serverUrl": "http://127.0.0.1:9/", "vtxUrl": "/x/vtx", "marginSecs": 0,
                "xsrfSources": ["input:a", "meta:b"], "hopTimeoutMs": 1500}"#,
        );
        assert_eq!(problems, Vec::<String>::new());
        let e = s.endpoints("https://app.example");
        assert_eq!(e.vtx, "http://127.0.0.1:9/x/vtx");
        assert_eq!(e.server, "http://127.0.0.1:9");
        assert_eq!(s.margin, Duration::ZERO);
        assert_eq!(s.hop_timeout, Duration::from_millis(1500));
        assert_eq!(s.xsrf_sources.len(), 2);
        assert_eq!(s.apply_json("[1]").len(), 1);
        assert_eq!(s.apply_json("{").len(), 1);
        assert_eq!(s.apply_json(r#"{"venueUrl": {}}"#).len(), 1);
    }

    #[test]
    fn absolute_paths_override_the_base() {
        let s = Settings {
            authorize_path: "https://auth.example/Authorize".to_owned(),
            ..Settings::default()
        };
        assert_eq!(s.endpoints("https://a.example").authorize, "https://auth.example/Authorize");
    }

    #[test]
    fn percent_decoding_matches_url_search_params() {
        assert_eq!(percent_decode("a+b%20c%2"), "a b c%2");
        assert_eq!(percent_decode("%e2%82%ac%zz"), "€%zz");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
