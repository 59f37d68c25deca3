//! Pinned program links: attach once and pin the bpf_link; on later starts atomically replace the
//! program inside the pinned link (BPF_LINK_UPDATE), so the uplink is never without a program.
use std::path::Path;

use aya::programs::{
    SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};
use l3lb_common::{PROG_TC_EGRESS, PROG_XDP_INGRESS};
use tracing::{info, warn};

use super::{DatapathError, pin};

/// How a program came to be on an uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// A pinned link existed; its program was replaced in place.
    Replaced,
    /// No usable pinned link: attached anew and pinned.
    Attached,
}

/// The pinned link at `path`, if one is there and is of the wanted kind; a stale pin (wrong kind,
/// unreadable) is removed with a warning.
fn pinned<L: TryFrom<FdLink>>(path: &Path, name: &'static str) -> Result<Option<L>, DatapathError> {
    if !path.exists() {
        return Ok(None);
    }
    let link = PinnedLink::from_pin(path)
        .ok()
        .and_then(|p| L::try_from(FdLink::from(p)).ok());
    if link.is_none() {
        warn!(program = name, pin = %path.display(), "pinned link unusable; attaching anew");
        pin::unpin(path)?;
    }
    Ok(link)
}

/// Puts the XDP program on `uplink` (native mode) behind the link pinned at `dir`.
pub(super) fn xdp(prog: &mut Xdp, uplink: &str, dir: &Path) -> Result<Attachment, DatapathError> {
    let name = PROG_XDP_INGRESS;
    let path = pin::xdp_link(dir, uplink);
    let link_err = |op, source| DatapathError::Link {
        name,
        uplink: uplink.to_owned(),
        op,
        source: Box::new(source),
    };
    if let Some(link) = pinned::<XdpLink>(&path, name)? {
        match prog.attach_to_link(link) {
            Ok(id) => {
                // The pin keeps the link; our fd is not needed.
                drop(prog.take_link(id).map_err(|e| link_err("take", e))?);
                info!(
                    program = name,
                    uplink, "replaced the program in the pinned link"
                );
                return Ok(Attachment::Replaced);
            }
            // E.g. ENOLINK: the uplink it was attached to is gone.
            Err(error) => {
                warn!(program = name, uplink, %error, "pinned link cannot be updated; attaching anew");
                pin::unpin(&path)?;
            }
        }
    }
    let id = prog
        .attach(uplink, XdpMode::Driver)
        .map_err(|source| DatapathError::XdpAttach {
            uplink: uplink.to_owned(),
            source,
        })?;
    let link = prog.take_link(id).map_err(|e| link_err("take", e))?;
    pin_link(FdLink::try_from(link).ok(), &path, name, uplink)?;
    info!(program = name, uplink, pin = %path.display(), "attached and pinned");
    Ok(Attachment::Attached)
}

/// Puts the TC egress program on `uplink` (tcx) behind the link pinned at `dir`.
pub(super) fn tc_egress(
    prog: &mut SchedClassifier,
    uplink: &str,
    dir: &Path,
) -> Result<Attachment, DatapathError> {
    let name = PROG_TC_EGRESS;
    let path = pin::tc_link(dir, uplink);
    let link_err = |op, source| DatapathError::Link {
        name,
        uplink: uplink.to_owned(),
        op,
        source: Box::new(source),
    };
    if let Some(link) = pinned::<SchedClassifierLink>(&path, name)? {
        match prog.attach_to_link(link) {
            Ok(id) => {
                drop(prog.take_link(id).map_err(|e| link_err("take", e))?);
                info!(
                    program = name,
                    uplink, "replaced the program in the pinned link"
                );
                return Ok(Attachment::Replaced);
            }
            Err(error) => {
                warn!(program = name, uplink, %error, "pinned link cannot be updated; attaching anew");
                pin::unpin(&path)?;
            }
        }
    }
    let id = prog
        .attach(uplink, TcAttachType::Egress)
        .map_err(|source| DatapathError::TcAttach {
            uplink: uplink.to_owned(),
            source,
        })?;
    let link = prog.take_link(id).map_err(|e| link_err("take", e))?;
    pin_link(FdLink::try_from(link).ok(), &path, name, uplink)?;
    info!(program = name, uplink, pin = %path.display(), "attached and pinned");
    Ok(Attachment::Attached)
}

/// Pins a fresh link. A netlink (non-bpf_link) attachment cannot be pinned: it would silently
/// detach with the daemon, so refuse it.
fn pin_link(
    link: Option<FdLink>,
    path: &Path,
    name: &'static str,
    uplink: &str,
) -> Result<(), DatapathError> {
    let link = link.ok_or_else(|| DatapathError::NotALink {
        name,
        uplink: uplink.to_owned(),
    })?;
    // Dropping the PinnedLink closes our fd; the pin keeps the link attached.
    link.pin(path).map_err(|source| DatapathError::LinkPin {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}
