//! VIP addresses on the advertising interface, through rtnetlink.
use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use futures::TryStreamExt;
use rtnetlink::{
    Handle,
    packet_route::address::{AddressAttribute, AddressMessage, CacheInfo},
};

use crate::apply::AddressTable;

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
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

/// Host routes (/32, /128) on one interface.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    interface: String,
    /// Valid and preferred lifetime in seconds set by every add; `None`: forever.
    lifetime_secs: Option<u32>,
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
        })
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> AddressError + '_ {
        let what = what.into();
        move |source| AddressError::Netlink {
            what,
            interface: self.interface.clone(),
            source,
        }
    }

    /// Looked up on every call: the interface may be re-created while the daemon runs.
    async fn index(&self) -> Result<u32, AddressError> {
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

    async fn messages(&self) -> Result<Vec<AddressMessage>, AddressError> {
        let index = self.index().await?;
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
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

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })
}

impl AddressTable for Netlink {
    type Error = AddressError;

    async fn addresses(&self) -> Result<BTreeSet<IpAddr>, AddressError> {
        Ok(self
            .messages()
            .await?
            .iter()
            .filter_map(address_of)
            .collect())
    }

    /// Adds or replaces `ip`, (re)setting its lifetime: the kernel updates the lifetime of an
    /// address that is already there (NLM_F_REPLACE), without withdrawing it.
    async fn add(&self, ip: IpAddr) -> Result<(), AddressError> {
        let index = self.index().await?;
        let mut req = self
            .handle
            .address()
            .add(index, ip, host_prefix(ip))
            .replace();
        if let Some(secs) = self.lifetime_secs {
            let mut info = CacheInfo::default();
            info.ifa_preferred = secs;
            info.ifa_valid = secs;
            req.message_mut()
                .attributes
                .push(AddressAttribute::CacheInfo(info));
        }
        let res = req.execute().await;
        res.map_err(self.err(format!("add {ip}")))
    }

    async fn remove(&self, ip: IpAddr) -> Result<(), AddressError> {
        for msg in self.messages().await? {
            if address_of(&msg) == Some(ip) {
                let res = self.handle.address().del(msg).execute().await;
                match res {
                    Err(rtnetlink::Error::NetlinkError(e))
                        if e.raw_code() == -libc::EADDRNOTAVAIL => {}
                    other => other.map_err(self.err(format!("remove {ip}")))?,
                }
            }
        }
        Ok(())
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
