//! The observability listener: Prometheus `/metrics`, `/healthz` (the process serves requests)
//! and `/readyz` (watches synced and a pass applied without failures).
use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::net::TcpListener;
use tracing::warn;

use super::Health;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for metrics and health (--metrics-addr): {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

struct Shared {
    registry: Registry,
    health: Health,
}

/// The routes, for a listener or a test.
pub fn router(registry: Registry, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Shared { registry, health }))
}

/// Binds `addr` now (so a taken port fails the start) and serves in a background task.
pub async fn serve(addr: SocketAddr, registry: Registry, health: Health) -> Result<(), BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let app = router(registry, health);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%addr, %error, "metrics listener stopped");
        }
    });
    Ok(())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut body = String::new();
    match encode(&mut body, &s.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(error) => {
            warn!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}
