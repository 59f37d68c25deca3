//! Pinned program links: attach once and pin the bpf_link; on later starts atomically replace the
//! program inside the pinned link (BPF_LINK_UPDATE), so the uplink is never without a program.
use std::path::Path;

use aya::programs::{
    ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
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
    let kind = Kind {
        name: PROG_XDP_INGRESS,
        attach: |p: &mut Xdp, uplink| p.attach(uplink, XdpMode::Driver),
        attach_err: |uplink, source| DatapathError::XdpAttach { uplink, source },
        replace: Xdp::attach_to_link,
        take: Xdp::take_link,
    };
    attach_pinned(prog, kind, uplink, &pin::xdp_link(dir, uplink))
}

/// Puts the TC egress program on `uplink` (tcx) behind the link pinned at `dir`.
pub(super) fn tc_egress(
    prog: &mut SchedClassifier,
    uplink: &str,
    dir: &Path,
) -> Result<Attachment, DatapathError> {
    let kind = Kind {
        name: PROG_TC_EGRESS,
        attach: |p: &mut SchedClassifier, uplink| p.attach(uplink, TcAttachType::Egress),
        attach_err: |uplink, source| DatapathError::TcAttach { uplink, source },
        replace: SchedClassifier::attach_to_link,
        take: SchedClassifier::take_link,
    };
    attach_pinned(prog, kind, uplink, &pin::tc_link(dir, uplink))
}

/// How one program type attaches. aya has no common trait for these methods, so each caller
/// names its own.
struct Kind<P, L, Id> {
    name: &'static str,
    attach: fn(&mut P, &str) -> Result<Id, ProgramError>,
    attach_err: fn(String, ProgramError) -> DatapathError,
    replace: fn(&mut P, L) -> Result<Id, ProgramError>,
    take: fn(&mut P, Id) -> Result<L, ProgramError>,
}

/// Replaces the program inside the link pinned at `path`, or attaches anew and pins the link.
fn attach_pinned<P, L, Id>(
    prog: &mut P,
    kind: Kind<P, L, Id>,
    uplink: &str,
    path: &Path,
) -> Result<Attachment, DatapathError>
where
    L: TryFrom<FdLink>,
    FdLink: TryFrom<L>,
{
    let name = kind.name;
    let link_err = |op, source| DatapathError::Link {
        name,
        uplink: uplink.to_owned(),
        op,
        source: Box::new(source),
    };
    if let Some(link) = pinned::<L>(path, name)? {
        match (kind.replace)(prog, link) {
            Ok(id) => {
                // The pin keeps the link; our fd is not needed.
                drop((kind.take)(prog, id).map_err(|e| link_err("take", e))?);
                info!(
                    program = name,
                    uplink, "replaced the program in the pinned link"
                );
                return Ok(Attachment::Replaced);
            }
            // E.g. ENOLINK: the uplink it was attached to is gone.
            Err(error) => {
                warn!(program = name, uplink, %error, "pinned link cannot be updated; attaching anew");
                pin::unpin(path)?;
            }
        }
    }
    let id = (kind.attach)(prog, uplink)
        .map_err(|source| (kind.attach_err)(uplink.to_owned(), source))?;
    let link = (kind.take)(prog, id).map_err(|e| link_err("take", e))?;
    pin_link(FdLink::try_from(link).ok(), path, name, uplink)?;
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
