//! The daemon's local control socket: `l3lb status` and `l3lb explain` ask the running daemon
//! what it serves and why. A Unix socket only root can open (mode 0600, `--control-socket`,
//! default `/run/l3lb/l3lb.sock`); one JSON request per connection, one JSON answer. The daemon's
//! loop answers between passes from the state it acts on, so an answer never disagrees with what
//! it does; nothing here changes anything.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

use super::status::Snapshot;
use crate::core::desired::explain::Explanation;

/// The default `--control-socket`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/l3lb/l3lb.sock";

/// Longest a client waits for the daemon (it answers between passes).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Status,
    /// `namespace/name`.
    Explain {
        service: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Status(Box<Snapshot>),
    Explain(Box<Explanation>),
    Error(String),
}

/// A request waiting for the loop's answer.
pub struct Query {
    pub request: Request,
    pub reply: oneshot::Sender<Answer>,
}

/// Listens on `path` (replacing a stale socket left by an earlier run); the loop receives the
/// queries. A socket that cannot be set up is logged and the daemon runs without it.
pub fn serve(path: &Path) -> mpsc::Receiver<Query> {
    let (tx, rx) = mpsc::channel(8);
    match listen(path) {
        Ok(listener) => {
            tokio::spawn(accept(listener, tx));
        }
        Err(error) => {
            warn!(path = %path.display(), %error, "no control socket: `l3lb status` and `l3lb explain` cannot reach this daemon")
        }
    }
    rx
}

fn listen(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn accept(listener: UnixListener, tx: mpsc::Sender<Query>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(error) = handle(stream, tx).await {
                debug!(%error, "control connection");
            }
        });
    }
}

async fn handle(stream: UnixStream, tx: mpsc::Sender<Query>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let answer = match serde_json::from_str::<Request>(&line) {
        Err(e) => Answer::Error(format!("bad request: {e}")),
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            tx.send(Query { request, reply }).await?;
            answer.await?
        }
    };
    write.write_all(&serde_json::to_vec(&answer)?).await?;
    write.shutdown().await?;
    Ok(())
}

/// Asks the daemon listening on `path`.
pub async fn ask(path: &PathBuf, request: &Request) -> anyhow::Result<Answer> {
    use anyhow::Context as _;
    let talk = async {
        let mut stream = UnixStream::connect(path).await.with_context(|| {
            format!(
                "cannot reach the daemon at {} (is `l3lb run` running here, with this \
                 --control-socket? this needs root)",
                path.display()
            )
        })?;
        let mut req = serde_json::to_vec(request)?;
        req.push(b'\n');
        stream.write_all(&req).await?;
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out).await?;
        Ok::<_, anyhow::Error>(serde_json::from_slice(&out)?)
    };
    tokio::time::timeout(ANSWER_TIMEOUT, talk)
        .await
        .context("the daemon did not answer")?
}
