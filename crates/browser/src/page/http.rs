//! The page client's HTTP calls: `fetch` on the global scope with JSON bodies, typed answers and
//! the one error body turned into [`PageError::Http`].

use js_sys::Promise;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Request, RequestCache, RequestCredentials, RequestInit, Response};

use super::error::PageError;
use super::js;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &Request) -> Promise;
}

/// `base` + `path`, where `base` is an origin (with or without a trailing slash) or empty for
/// the page's own origin.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// One request to the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a str,
    /// A JSON body (sent with `Content-Type: application/json`).
    pub(crate) json: Option<&'a str>,
    /// `Authorization: Bearer …`.
    pub(crate) bearer: Option<&'a str>,
    /// Send cookies, also cross-origin (`credentials: "include"`), for the refresh cookie.
    pub(crate) cookies: bool,
    /// `Last-Event-ID`.
    pub(crate) last_event_id: Option<&'a str>,
    /// Aborts the request (and the body of a streamed answer).
    pub(crate) signal: Option<&'a AbortSignal>,
}

impl<'a> Call<'a> {
    pub(crate) fn get(url: &'a str) -> Self {
        Self {
            method: "GET",
            url,
            json: None,
            bearer: None,
            cookies: false,
            last_event_id: None,
            signal: None,
        }
    }

    pub(crate) fn post(url: &'a str, json: Option<&'a str>) -> Self {
        Self { method: "POST", json, ..Self::get(url) }
    }

    fn request(&self) -> Result<Request, PageError> {
        let init = RequestInit::new();
        init.set_method(self.method);
        init.set_cache(RequestCache::NoStore);
        init.set_credentials(if self.cookies {
            RequestCredentials::Include
        } else {
            RequestCredentials::SameOrigin
        });
        if let Some(body) = self.json {
            init.set_body(&JsValue::from_str(body));
        }
        init.set_signal(self.signal);
        let request = Request::new_with_str_and_init(self.url, &init)
            .map_err(|e| PageError::InvalidArgument(js::describe(&e)))?;
        let headers = request.headers();
        let set = |name: &str, value: &str| {
            headers.set(name, value).map_err(|e| PageError::InvalidArgument(js::describe(&e)))
        };
        if self.json.is_some() {
            set("Content-Type", "application/json")?;
        }
        if let Some(token) = self.bearer {
            set("Authorization", &format!("Bearer {token}"))?;
        }
        if let Some(id) = self.last_event_id {
            set("Last-Event-ID", id)?;
        }
        Ok(request)
    }

    /// Sends the request; any answer (also 4xx/5xx) is `Ok`, only a failed fetch is an error.
    pub(crate) async fn send(&self) -> Result<Response, PageError> {
        fetch(&self.request()?).await
    }

    /// Sends the request and parses a 2xx JSON answer as `R`; an error status becomes
    /// [`PageError::Http`] with the server's code.
    pub(crate) async fn json<R: DeserializeOwned>(
        &self,
        what: &'static str,
    ) -> Result<R, PageError> {
        let response = self.send().await?;
        let status = response.status();
        let body = text(&response).await?;
        if !response.ok() {
            return Err(PageError::from_answer(status, &body));
        }
        protocol::json::from_str(&body)
            .map_err(|e| PageError::BadResponse { what, detail: e.to_string() })
    }
}

/// `fetch(request)`; a rejected fetch (offline, CORS, abort) is [`PageError::Network`].
pub(crate) async fn fetch(request: &Request) -> Result<Response, PageError> {
    let response = JsFuture::from(global_fetch(request))
        .await
        .map_err(|e| PageError::Network(js::describe(&e)))?;
    response.dyn_into::<Response>().map_err(|_| PageError::Network("fetch gave no Response".into()))
}

/// The whole body as text.
pub(crate) async fn text(response: &Response) -> Result<String, PageError> {
    let promise = response.text().map_err(|e| PageError::Network(js::describe(&e)))?;
    let value = JsFuture::from(promise).await.map_err(|e| PageError::Network(js::describe(&e)))?;
    Ok(value.as_string().unwrap_or_default())
}

/// A value as JSON text (plain data: cannot fail).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    protocol::json::to_string(value).unwrap_or_default()
}
