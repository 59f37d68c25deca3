//! VIP addresses on the advertising interface, through rtnetlink. l3lb marks every address it
//! adds with its own address protocol (IFA_PROTO, Linux >= 6.3), and only marked addresses are
//! its to observe and remove: an address someone else put inside --prefix (a router id on `lo`,
//! the host's own address) is never garbage-collected.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures::TryStreamExt;
use rtnetlink::{
    AddressMessageBuilder, Handle,
    packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol, CacheInfo},
};

use crate::node::{executor::AddressTable, observe::AddressObserver};

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error(
        "--prefix covers addresses l3lb did not add: {}. l3lb would announce and DNAT traffic \
         meant for them; narrow --prefix so it holds only VIPs, or move those addresses out of \
         it",
        .found.join(", ")
    )]
    ForeignInPrefix { found: Vec<String> },
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("interface {interface} not found")]
    NoSuchInterface { interface: String },
    #[error("netlink request for {what} on {interface} failed: {source}")]
    Netlink {
        what: String,
        interface: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// The address protocol (IFA_PROTO) l3lb's VIPs carry (`ip -d address` shows it as `proto 76`
/// with iproute2 >= 6.3). The kernel reserves 0-3 for its own addresses.
pub const L3LB_ADDRESS_PROTO: u8 = 76;

/// Host routes (/32, /128) on one interface.
#[derive(Clone)]
pub struct Netlink {
    pub(super) handle: Handle,
    interface: String,
    /// Valid and preferred lifetime in seconds set by every add; `None`: forever.
    lifetime_secs: Option<u32>,
    /// The interface's index once resolved (0: not yet). Forgotten when the kernel answers
    /// ENODEV, so a re-created interface is found again.
    index: Arc<AtomicU32>,
}

impl Netlink {
    /// Opens a netlink connection (served by a task on the current tokio runtime). Addresses are
    /// added with `lifetime` (rounded up to seconds), or forever.
    pub fn new(interface: &str, lifetime: Option<Duration>) -> Result<Self, AddressError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(AddressError::Connect)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            interface: interface.to_owned(),
            lifetime_secs: lifetime.map(lifetime_secs),
            index: Arc::new(AtomicU32::new(0)),
        })
    }

    pub(super) fn err(
        &self,
        what: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> AddressError + '_ {
        let what = what.into();
        move |source| AddressError::Netlink {
            what,
            interface: self.interface.clone(),
            source,
        }
    }

    /// Cached after the first lookup; see [`Self::forget_index_on_enodev`].
    async fn index(&self) -> Result<u32, AddressError> {
        match self.index.load(Ordering::Relaxed) {
            0 => {
                let index = self.lookup_index().await?;
                self.index.store(index, Ordering::Relaxed);
                Ok(index)
            }
            index => Ok(index),
        }
    }

    /// The interface may be re-created while the daemon runs: a request that finds no device
    /// drops the cached index, so the next one looks it up again.
    fn forget_index_on_enodev<T>(
        &self,
        res: Result<T, rtnetlink::Error>,
    ) -> Result<T, rtnetlink::Error> {
        if let Err(rtnetlink::Error::NetlinkError(e)) = &res
            && e.raw_code() == -libc::ENODEV
        {
            self.index.store(0, Ordering::Relaxed);
        }
        res
    }

    async fn lookup_index(&self) -> Result<u32, AddressError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(self.interface.clone())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(AddressError::NoSuchInterface {
                interface: self.interface.clone(),
            }),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                Err(AddressError::NoSuchInterface {
                    interface: self.interface.clone(),
                })
            }
            Err(e) => Err(self.err("link lookup")(e)),
        }
    }

    pub(super) async fn messages(&self) -> Result<Vec<AddressMessage>, AddressError> {
        let index = self.index().await?;
        let res = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await;
        self.forget_index_on_enodev(res)
            .map_err(self.err("address dump"))
    }
}

/// Whole seconds, at least 1, below the kernel's "forever" (u32::MAX).
fn lifetime_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs)
        .unwrap_or(u32::MAX - 1)
        .clamp(1, u32::MAX - 1)
}

fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

pub(super) fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

/// Whether l3lb added this address.
pub(super) fn is_ours(msg: &AddressMessage) -> bool {
    msg.attributes
        .iter()
        .any(|a| matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == L3LB_ADDRESS_PROTO))
}

impl AddressObserver for Netlink {
    type Error = AddressError;

    /// l3lb's own addresses on the interface: those it marked.
    async fn addresses(&self) -> Result<BTreeSet<IpAddr>, AddressError> {
        Ok(self
            .messages()
            .await?
            .iter()
            .filter(|m| is_ours(m))
            .filter_map(address_of)
            .collect())
    }

    async fn host_addresses(&self) -> Result<Vec<IpAddr>, AddressError> {
        let all = self.all_addresses().await?;
        Ok(all.into_iter().map(|a| a.ip).collect())
    }
}

impl AddressTable for Netlink {
    type Error = AddressError;

    /// Adds or replaces `ip`, (re)setting its lifetime: the kernel updates the lifetime of an
    /// address that is already there (NLM_F_REPLACE), without withdrawing it.
    async fn add(&self, ip: IpAddr) -> Result<(), AddressError> {
        let index = self.index().await?;
        let mut req = self
            .handle
            .address()
            .add(index, ip, host_prefix(ip))
            .replace();
        req.message_mut()
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(
                L3LB_ADDRESS_PROTO,
            )));
        if let Some(secs) = self.lifetime_secs {
            let mut info = CacheInfo::default();
            info.ifa_preferred = secs;
            info.ifa_valid = secs;
            req.message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(info));
        }
        let res = req.execute().await;
        self.forget_index_on_enodev(res)
            .map_err(self.err(format!("add {ip}")))
    }

    /// Deletes the host route `ip` directly (no dump first); absent is success.
    async fn remove(&self, ip: IpAddr) -> Result<(), AddressError> {
        let index = self.index().await?;
        let msg = match ip {
            IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(v4, host_prefix(ip))
                .build(),
            IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(v6, host_prefix(ip))
                .build(),
        };
        let res = self.handle.address().del(msg).execute().await;
        match self.forget_index_on_enodev(res) {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {
                Ok(())
            }
            other => other.map_err(self.err(format!("remove {ip}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::lifetime_secs;

    #[test]
    fn lifetimes_round_up_to_whole_seconds_below_forever() {
        assert_eq!(lifetime_secs(Duration::from_secs(60)), 60);
        assert_eq!(lifetime_secs(Duration::from_millis(1500)), 2);
        assert_eq!(lifetime_secs(Duration::from_millis(1)), 1);
        assert_eq!(lifetime_secs(Duration::from_secs(u64::MAX)), u32::MAX - 1);
    }
}
