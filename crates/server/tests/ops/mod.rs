//! What an operator and the application's own backend use: `/healthz` and `/readyz` (also
//! with Redis going away and coming back), the server API behind its key (publish,
//! disconnect, presence), draining on SIGTERM, the Prometheus
//! metrics, the request hygiene layers (request ids, sensitive headers, panics) and the
//! binary's configuration file.

mod api;
mod config;
mod drain;
mod health;
mod hygiene;
mod metrics;
mod openapi;
mod presence;

use reqwest::Response;
use serde_json::Value;

/// The status and the JSON body of a response.
async fn status_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}
