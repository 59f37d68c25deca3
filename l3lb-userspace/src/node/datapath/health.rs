//! Whether the programs still sit on every uplink. Someone may detach a link (`bpftool link
//! detach`), put another XDP program on the interface, or re-create it; a VIP announced there
//! would then reach the host instead of the pods. Broken uplinks are re-attached where possible;
//! what stays broken is reported so the VIPs are withdrawn.
use std::collections::BTreeMap;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkXdp};
use tracing::{info, warn};

use super::{Datapath, DatapathError, links, tc_mut, tcx, xdp_mut};

/// Why an uplink does not forward through l3lb.
#[derive(Debug, thiserror::Error)]
pub enum UplinkFault {
    #[error("interface {0} not found")]
    NoSuchUplink(String),
    #[error("no XDP program is attached to {0}")]
    NoXdp(String),
    #[error("the XDP program on {uplink} is program {found}, not l3lb's ({ours})")]
    ForeignXdp {
        uplink: String,
        found: u32,
        ours: u32,
    },
    #[error("l3lb's TC egress program is not attached to {0}")]
    NoTc(String),
    #[error("cannot query interface {uplink}: {source}")]
    Netlink {
        uplink: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// The id of the XDP program attached to `uplink` in this network namespace, if any.
pub async fn attached_xdp_id(uplink: &str) -> Result<Option<u32>, UplinkFault> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(UplinkFault::Connect)?;
    let conn = tokio::spawn(conn);
    let link = handle
        .link()
        .get()
        .match_name(uplink.to_owned())
        .execute()
        .try_next()
        .await;
    conn.abort();
    let link = match link {
        Ok(Some(link)) => link,
        Ok(None) => return Err(UplinkFault::NoSuchUplink(uplink.to_owned())),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
            return Err(UplinkFault::NoSuchUplink(uplink.to_owned()));
        }
        Err(source) => {
            return Err(UplinkFault::Netlink {
                uplink: uplink.to_owned(),
                source,
            });
        }
    };
    Ok(link
        .attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::Xdp(xdp) => Some(xdp),
            _ => None,
        })
        .flatten()
        .find_map(|x| match x {
            LinkXdp::ProgId(id) | LinkXdp::DrvProgId(id) if *id != 0 => Some(*id),
            _ => None,
        }))
}

impl Datapath {
    /// The uplinks that do not carry both of l3lb's programs, with why, after one attempt to
    /// re-attach each (pinned datapaths only). Empty: every uplink forwards.
    pub async fn check_uplinks(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for uplink in self.uplinks.clone() {
            let Err(fault) = self.uplink_ok(&uplink).await else {
                continue;
            };
            let repaired = match self.reattach(&uplink) {
                Ok(()) => self.uplink_ok(&uplink).await,
                Err(error) => Err(error.into()),
            };
            match repaired {
                Ok(()) => {
                    warn!(uplink, fault = %fault, "datapath was broken on an uplink; re-attached")
                }
                Err(error) => {
                    out.insert(
                        uplink,
                        format!("{fault}; re-attaching failed: {}", chain(&error)),
                    );
                }
            }
        }
        out
    }

    async fn uplink_ok(&mut self, uplink: &str) -> Result<(), UplinkFault> {
        let ours = xdp_mut(&mut self.ebpf)?
            .info()
            .map_err(|source| DatapathError::ProgramInfo { source })?
            .id();
        match attached_xdp_id(uplink).await? {
            None => return Err(UplinkFault::NoXdp(uplink.to_owned())),
            Some(found) if found != ours => {
                return Err(UplinkFault::ForeignXdp {
                    uplink: uplink.to_owned(),
                    found,
                    ours,
                });
            }
            Some(_) => {}
        }
        let tc = tc_mut(&mut self.ebpf)?
            .info()
            .map_err(|source| DatapathError::ProgramInfo { source })?
            .id();
        // Ids only: opening the programs by id would need CAP_SYS_ADMIN.
        let attached = tcx::egress_prog_ids(uplink).map_err(|source| DatapathError::TcIds {
            uplink: uplink.to_owned(),
            source,
        })?;
        if !attached.contains(&tc) {
            return Err(UplinkFault::NoTc(uplink.to_owned()));
        }
        Ok(())
    }

    /// Puts both programs back on `uplink` behind its pinned links (replacing in place where a
    /// link still holds them). An unpinned datapath is not repaired.
    fn reattach(&mut self, uplink: &str) -> Result<(), DatapathError> {
        let Some(dir) = self.dir.clone() else {
            return Err(DatapathError::NotPinned);
        };
        links::xdp(xdp_mut(&mut self.ebpf)?, uplink, &dir)?;
        links::tc_egress(tc_mut(&mut self.ebpf)?, uplink, &dir)?;
        info!(uplink, "programs re-attached");
        Ok(())
    }
}

/// An error and its sources, for a reason logged and kept as text.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out += &format!(": {e}");
        source = e.source();
    }
    out
}
