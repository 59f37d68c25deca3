//! How long each of l3lb's VIPs has left on the interface (`valid_lft`, as `ip address` shows
//! it): what `l3lb status` prints beside each address.
use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use rtnetlink::packet_route::address::AddressAttribute;

use super::addresses::{AddressError, Netlink, address_of, is_ours};

impl Netlink {
    /// l3lb's addresses on the interface with their remaining valid lifetime (`None`: forever).
    pub async fn lifetimes(&self) -> Result<BTreeMap<IpAddr, Option<Duration>>, AddressError> {
        let mut out = BTreeMap::new();
        for msg in self.messages().await?.iter().filter(|m| is_ours(m)) {
            let Some(ip) = address_of(msg) else { continue };
            let valid = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::CacheInfo(ci) => Some(ci.ifa_valid),
                _ => None,
            });
            let left = valid
                .filter(|v| *v != u32::MAX)
                .map(|v| Duration::from_secs(v.into()));
            out.insert(ip, left);
        }
        Ok(out)
    }
}
