//! The page client's requests to the backend, on the one fetch wrapper ([`crate::net`]): every
//! page request skips the HTTP cache, a failed fetch is a [`PageError`], and an error status
//! becomes [`PageError::Http`] with the server's stable code.

use serde::de::DeserializeOwned;
use web_sys::Response;

use super::error::PageError;
use crate::net::{self, HttpRequest, NetError};
pub(crate) use crate::net::{join, to_json};

/// A `GET` of `url` by the page: no cache, same-origin cookies, no timeout.
pub(crate) fn get(url: &str) -> HttpRequest<'_> {
    HttpRequest { no_store: true, ..HttpRequest::to(url) }
}

/// A `POST` of `url` by the page with an optional JSON body.
pub(crate) fn post<'a>(url: &'a str, json: Option<&'a str>) -> HttpRequest<'a> {
    HttpRequest { method: "POST", json, ..get(url) }
}

impl From<NetError> for PageError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::InvalidRequest(detail) => Self::InvalidArgument(detail),
            NetError::Network(detail) => Self::Network(detail),
            other => Self::Network(other.to_string()),
        }
    }
}

/// Starts `request`; any answer (also 4xx/5xx) is `Ok`, only a failed fetch is an error.
pub(crate) async fn open(request: &HttpRequest<'_>) -> Result<Response, PageError> {
    Ok(net::open(request).await?)
}

/// Sends `request` and parses a 2xx JSON answer as `R`; an error status becomes
/// [`PageError::Http`] with the server's code.
pub(crate) async fn json<R: DeserializeOwned>(
    request: &HttpRequest<'_>,
    what: &'static str,
) -> Result<R, PageError> {
    let response = net::send(request).await?;
    if !response.is_success() {
        return Err(PageError::from_answer(response.status, &response.body));
    }
    response.json().map_err(|detail| PageError::BadResponse { what, detail })
}
