//! What the daemon learns about its own node besides the Node object: the addresses on its
//! interfaces (endpoints there would reach the host's sockets), and whether --prefix covers one
//! of the Node's addresses (refused at start).
use std::net::IpAddr;

use tracing::warn;

use super::pass::Reconciler;
use crate::{
    core::config::Config,
    k8s::watch::Stores,
    node::{
        executor::{AddressTable, FrontendTable},
        observe::{AddressObserver, FrontendObserver},
    },
};

/// Reads the host's addresses outside the VIP prefixes into `host` (kept as they were when they
/// cannot be read); returns whether they changed. VIPs are left out: they are refused as such,
/// and with them the set would change on every announcement.
pub(super) async fn refresh_host<
    F: FrontendTable + FrontendObserver,
    A: AddressTable + AddressObserver,
>(
    reconciler: &Reconciler<F, A>,
    host: &mut Vec<IpAddr>,
) -> bool {
    let prefixes = &reconciler.config().prefixes;
    match reconciler.host_addresses().await {
        Ok(mut now) => {
            now.retain(|ip| !prefixes.iter().any(|p| p.contains(ip)));
            now.sort();
            now.dedup();
            let changed = now != *host;
            *host = now;
            changed
        }
        Err(error) => {
            warn!(%error, "cannot read the host's addresses; checking endpoints against the last known ones");
            false
        }
    }
}

/// Refuses to run when a --prefix covers one of the Node's own addresses: l3lb would announce
/// and DNAT what belongs to the node.
pub(super) fn check_node_addresses(stores: &Stores, config: &Config) -> anyhow::Result<()> {
    let node = stores.node(&config.node_name);
    let covered: Vec<String> = node
        .as_deref()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| {
            a.address
                .parse::<IpAddr>()
                .is_ok_and(|ip| config.prefixes.iter().any(|p| p.contains(&ip)))
        })
        .map(|a| format!("{} ({})", a.address, a.type_))
        .collect();
    if covered.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "--prefix covers addresses of Node {}: {}; narrow --prefix so it holds only VIPs",
        config.node_name,
        covered.join(", ")
    )
}
