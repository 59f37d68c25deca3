//! Reading the node back, apart from changing it ([`super::executor`]): the frontends the maps
//! hold, l3lb's addresses and the host's, the datapath's counters, and whether every uplink
//! still forwards (repaired where it can be). What the reconciler plans against and what the
//! metrics show.
use std::{
    collections::{BTreeMap, BTreeSet},
    error::Error,
    future::Future,
    net::IpAddr,
};

use l3lb_common::{Counter, Stat};

use crate::core::model::{DatapathSettings, FrontendId, Frontends};

/// The datapath as observed.
pub trait FrontendObserver {
    type Error: Error + Send + Sync + 'static;
    /// Every programmed frontend with its backends.
    fn frontends(&self) -> Result<Frontends, Self::Error>;
    /// The datapath's prefixes and redirect targets as its maps hold them; the defaults (none)
    /// by default.
    fn settings(&self) -> Result<DatapathSettings, Self::Error> {
        Ok(DatapathSettings::default())
    }
    /// The interfaces (by index) that take redirected frames; none by default.
    fn redirect_capable(&self) -> impl Future<Output = Result<BTreeSet<u32>, Self::Error>> + Send {
        std::future::ready(Ok(BTreeSet::new()))
    }
    /// The datapath's verdict counters, summed over CPUs; none by default.
    fn counters(&self) -> Result<BTreeMap<Counter, Stat>, Self::Error> {
        Ok(BTreeMap::new())
    }
    /// Packets and bytes DNATed per programmed frontend, summed over CPUs, for at most `limit`
    /// frontends in order after `after`; none by default.
    fn frontend_stats(
        &self,
        _after: Option<FrontendId>,
        _limit: usize,
    ) -> Result<BTreeMap<FrontendId, Stat>, Self::Error> {
        Ok(BTreeMap::new())
    }
    /// The uplinks where the datapath does not forward, with why, after trying to repair them
    /// (re-attaching a program detached by hand). Empty: it forwards everywhere (the default).
    fn check_uplinks(&mut self) -> impl Future<Output = BTreeMap<String, String>> + Send {
        std::future::ready(BTreeMap::new())
    }
}

/// The node's addresses as observed.
pub trait AddressObserver {
    type Error: Error + Send + Sync + 'static;
    /// l3lb's own addresses currently on the interface (the caller filters by prefix).
    fn addresses(&self) -> impl Future<Output = Result<BTreeSet<IpAddr>, Self::Error>> + Send;
    /// Every address on the host's interfaces (endpoints there would reach its sockets); none
    /// by default.
    fn host_addresses(&self) -> impl Future<Output = Result<Vec<IpAddr>, Self::Error>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}
