//! Outages: [`ApiServer::stop`] behaves like a crashed API server (listeners closed, so new
//! connections are refused, and every open connection, watches included, cut at once);
//! [`ApiServer::restart`] serves again on the same addresses, in the same network namespaces.
use std::{
    net::{Shutdown, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use socket2::{Domain, SockRef, Socket, Type};

use super::{ApiServer, http};

/// One address being served: what it takes to stop it and to serve it again.
pub(super) struct Served {
    addr: SocketAddr,
    netns: Option<String>,
    task: Option<tokio::task::AbortHandle>,
    /// Duplicates of the accepted sockets, so [`ApiServer::stop`] can shut them down.
    conns: Arc<Mutex<Vec<Socket>>>,
}

/// A listening socket on `addr` (port 0: any), inside network namespace `netns` if given.
/// SO_REUSEADDR, so a restart can bind the port again while old connections linger.
pub(super) fn bind(netns: Option<&str>, addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listen = move || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    let listener = match netns {
        Some(ns) => crate::netns::in_netns(ns, listen)?,
        None => listen(),
    }
    .with_context(|| format!("binding the API server to {addr} (netns {netns:?})"))?;
    Ok(listener)
}

impl ApiServer {
    /// Serves on `listener` (a task on the current runtime) and remembers it for stop/restart.
    pub(super) fn serve(
        &self,
        listener: tokio::net::TcpListener,
        netns: Option<&str>,
    ) -> anyhow::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let conns = Arc::new(Mutex::new(Vec::new()));
        let task = self.spawn(listener, conns.clone());
        self.served().push(Served {
            addr,
            netns: netns.map(str::to_owned),
            task: Some(task),
            conns,
        });
        Ok(addr)
    }

    fn spawn(
        &self,
        listener: tokio::net::TcpListener,
        conns: Arc<Mutex<Vec<Socket>>>,
    ) -> tokio::task::AbortHandle {
        let addr = listener.local_addr().ok();
        let listener = listener.tap_io(move |io| {
            if let Ok(dup) = SockRef::from(&*io).try_clone() {
                conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(dup);
            }
        });
        let app = http::router(self.shared.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, ?addr, "test API server stopped");
            }
        })
        .abort_handle()
    }

    fn served(&self) -> std::sync::MutexGuard<'_, Vec<Served>> {
        self.shared
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops serving everywhere, as if the API server crashed: connections are refused from now
    /// on and every open one is cut.
    pub fn stop(&self) {
        for served in self.served().iter_mut() {
            if let Some(task) = served.task.take() {
                task.abort();
            }
            let conns =
                std::mem::take(&mut *served.conns.lock().unwrap_or_else(PoisonError::into_inner));
            for conn in conns {
                let _ = conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Serves again on every address [`ApiServer::stop`] closed. Needs the runtime the server
    /// should run on.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let stopped: Vec<(usize, SocketAddr, Option<String>)> = self
            .served()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.task.is_none())
            .map(|(i, s)| (i, s.addr, s.netns.clone()))
            .collect();
        for (i, addr, netns) in stopped {
            let listener =
                tokio::task::spawn_blocking(move || bind(netns.as_deref(), addr)).await??;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let conns = self.served()[i].conns.clone();
            let task = self.spawn(listener, conns);
            self.served()[i].task = Some(task);
        }
        Ok(())
    }
}
