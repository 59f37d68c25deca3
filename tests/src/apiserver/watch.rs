//! Streaming watches: newline-delimited `{"type", "object"}` events after a resourceVersion,
//! with periodic BOOKMARKs, `timeoutSeconds`, and 410 Gone (as an ERROR event) for history that
//! [`super::ApiServer::compact`] dropped.
use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::{StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};
use tokio::{sync::mpsc, time::Instant};

use super::{
    Shared,
    request::{Query, to_metadata_only},
    resources::RESOURCES,
    status::ApiError,
    store::Filter,
};

/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

struct Params {
    filter: Filter,
    bookmarks: bool,
    metadata_only: bool,
    deadline: Option<Instant>,
}

fn line(ty: &str, object: &Value) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

impl Params {
    fn event(&self, ty: &str, obj: &Value) -> Bytes {
        if self.metadata_only {
            line(ty, &to_metadata_only(obj))
        } else {
            line(ty, obj)
        }
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let rt = &RESOURCES[self.filter.res];
        let (kind, api_version) = if self.metadata_only {
            (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            )
        } else {
            (rt.kind.to_string(), rt.api_version())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }
}

/// Starts a watch; the response streams until the client goes away, the timeout passes, or the
/// store is compacted.
pub fn serve(
    shared: &Arc<Shared>,
    filter: Filter,
    query: &Query,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let flag = |name: &str| query.get(name).is_some_and(|v| v == "true" || v == "1");
    let start = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let timeout = match query.get("timeoutSeconds") {
        Some(t) => Some(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => None,
    };
    let params = Params {
        filter,
        bookmarks: flag("allowWatchBookmarks"),
        metadata_only,
        deadline: timeout
            .filter(|t| *t > 0)
            .map(|t| Instant::now() + Duration::from_secs(t)),
    };
    let send_initial = flag("sendInitialEvents");
    // Subscribe before reading, so no write between the read and the first wait is missed.
    let changed = shared.changed.subscribe();
    let (initial, cursor, epoch) = shared.read(|s| {
        let initial =
            (start.is_none() || send_initial).then(|| s.list(&params.filter, None, None).0);
        (initial, start.unwrap_or(s.rv()), s.epoch())
    });
    let mut first = Vec::new();
    for obj in initial.iter().flatten() {
        first.push(params.event("ADDED", obj));
    }
    if send_initial && params.bookmarks {
        first.push(params.bookmark(cursor, true));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    // `serve` runs inside a request handler, so a runtime is current.
    tokio::spawn(run(
        shared.clone(),
        params,
        first,
        cursor,
        epoch,
        changed,
        tx,
    ));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn run(
    shared: Arc<Shared>,
    params: Params,
    first: Vec<Bytes>,
    mut cursor: u64,
    epoch: u64,
    mut changed: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Bytes>,
) {
    for line in first {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    let mut tick = tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = params.deadline;
    let expired = async move {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        changed.borrow_and_update();
        let batch = shared.read(|s| {
            (s.epoch() == epoch).then(|| {
                s.changes_since(cursor, &params.filter)
                    .map(|evs| (evs, s.rv()))
            })
        });
        match batch {
            // Compacted: end the watch so the client comes back (and meets 410 Gone).
            None => return,
            Some(Err(gone)) => {
                shared.write(|s| s.note_gone());
                let _ = tx.send(line("ERROR", &gone.to_status())).await;
                return;
            }
            Some(Ok((events, rv))) => {
                for (ty, obj) in events {
                    if tx.send(params.event(ty, &obj)).await.is_err() {
                        return;
                    }
                }
                cursor = rv;
            }
        }
        tokio::select! {
            res = changed.changed() => if res.is_err() { return },
            _ = tick.tick(), if params.bookmarks => {
                if tx.send(params.bookmark(cursor, false)).await.is_err() {
                    return;
                }
            }
            () = &mut expired => return,
            () = tx.closed() => return,
        }
    }
}
