//! The executor: carries out a plan against the maps and the interface. Idempotent and dumb:
//! a failed step is logged and retried on the next pass, and never stops the others. Address
//! steps that follow each other (a plan lists its additions together, its removals together)
//! are sent together, up to [`IN_FLIGHT`] at a time, instead of one round trip each.
use std::{
    collections::{BTreeMap, BTreeSet},
    error::Error,
    future::Future,
    net::IpAddr,
};

use futures::StreamExt as _;
use tracing::{debug, info, warn};

use crate::core::{
    model::{Backends, DatapathSettings, FrontendId},
    plan::Step,
};

/// The frontend maps, as the executor changes them (reading them back is
/// [`FrontendObserver`](super::observe::FrontendObserver)'s).
pub trait FrontendTable {
    type Error: Error + Send + Sync + 'static;
    fn upsert(&mut self, id: FrontendId, endpoints: &Backends) -> Result<(), Self::Error>;
    /// Removing an absent frontend succeeds.
    fn remove(&mut self, id: FrontendId) -> Result<(), Self::Error>;
    /// Gives the datapath these prefixes and redirect targets.
    fn configure(&mut self, settings: &DatapathSettings) -> Result<(), Self::Error>;
}

/// The VIP addresses on the interface, as the executor changes them (reading them back is
/// [`AddressObserver`](super::observe::AddressObserver)'s).
pub trait AddressTable {
    type Error: Error + Send + Sync + 'static;
    /// Adding a present address succeeds.
    fn add(&self, ip: IpAddr) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Removing an absent address succeeds.
    fn remove(&self, ip: IpAddr) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Address requests sent before the first one's answer is awaited. Bounded: the kernel drops
/// answers that do not fit the socket's receive buffer.
pub const IN_FLIGHT: usize = 128;

/// What one pass of [`apply`] achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub applied: usize,
    pub failed: usize,
    /// Failed steps by [`Step::kind`].
    pub failed_steps: BTreeMap<&'static str, usize>,
    /// VIPs put on the interface (announced), in order.
    pub assumed: Vec<IpAddr>,
    /// VIPs taken off the interface (withdrawn), in order.
    pub forfeited: Vec<IpAddr>,
}

/// Applies `steps` in order. Nothing is advertised that does not forward: an address is only
/// added when every frontend of its VIP that this plan programs succeeded, and a VIP already on
/// the interface is withdrawn when one of its frontends missing from the maps fails to program
/// (nodes with replicas serve it meanwhile); the next pass retries both. A failed update of a
/// frontend in the maps withdraws nothing: its previous backends still serve. Consecutive
/// address steps (each on another address) are in flight together; their results are taken in
/// order.
pub async fn apply<F: FrontendTable, A: AddressTable>(
    steps: &[Step],
    frontends: &mut F,
    addresses: &A,
) -> Outcome {
    let mut out = Outcome::default();
    let mut unprogrammed: BTreeSet<IpAddr> = BTreeSet::new();
    let mut withdrawn: BTreeSet<IpAddr> = BTreeSet::new();
    let added: BTreeSet<IpAddr> = steps
        .iter()
        .filter_map(|s| match s {
            Step::AddAddress(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    let mut at = 0;
    while at < steps.len() {
        let run = steps[at..]
            .iter()
            .take_while(|s| is_address_step(s))
            .count();
        if run > 0 {
            let run = &steps[at..at + run];
            at += run.len();
            let (unprogrammed, withdrawn) = (&unprogrammed, &withdrawn);
            let mut results = futures::stream::iter(run)
                .map(|step| address_step(step, addresses, unprogrammed, withdrawn))
                .buffered(IN_FLIGHT);
            let mut steps = run.iter();
            while let (Some(result), Some(step)) = (results.next().await, steps.next()) {
                tally(&mut out, step, result);
            }
            continue;
        }
        let step = &steps[at];
        at += 1;
        let result: Result<(), Box<dyn Error + Send + Sync>> = match step {
            Step::UpsertFrontend {
                id,
                endpoints,
                missing,
            } => {
                let r = frontends.upsert(*id, endpoints);
                match &r {
                    Ok(()) => info!(
                        frontend = %id,
                        endpoints = %endpoints,
                        "frontend programmed"
                    ),
                    Err(error) => {
                        unprogrammed.insert(id.vip);
                        if *missing
                            && !added.contains(&id.vip)
                            && withdrawn.insert(id.vip)
                            && withdraw_unprogrammed(addresses, *id, error).await
                        {
                            out.forfeited.push(id.vip);
                        }
                    }
                }
                r.map_err(Into::into)
            }
            Step::RemoveFrontend(id) => {
                let r = frontends.remove(*id);
                if r.is_ok() {
                    info!(frontend = %id, "frontend removed");
                }
                r.map_err(Into::into)
            }
            Step::Configure(settings) => {
                let r = frontends.configure(settings);
                if r.is_ok() {
                    info!(prefixes = ?settings.prefixes, redirect_targets = ?settings.redirect_targets,
                        "datapath configured");
                }
                r.map_err(Into::into)
            }
            // Taken in runs above.
            Step::AddAddress(_) | Step::RemoveAddress(_) | Step::RenewAddress(_) => {
                address_step(step, addresses, &unprogrammed, &withdrawn).await
            }
        };
        tally(&mut out, step, result);
    }
    out
}

fn is_address_step(step: &Step) -> bool {
    matches!(
        step,
        Step::AddAddress(_) | Step::RemoveAddress(_) | Step::RenewAddress(_)
    )
}

/// Counts a step's result (and logs a failure); notes the VIPs announced and withdrawn.
fn tally(out: &mut Outcome, step: &Step, result: Result<(), Box<dyn Error + Send + Sync>>) {
    match result {
        Ok(()) => {
            out.applied += 1;
            match step {
                Step::AddAddress(ip) => out.assumed.push(*ip),
                Step::RemoveAddress(ip) => out.forfeited.push(*ip),
                _ => {}
            }
        }
        Err(error) => {
            out.failed += 1;
            *out.failed_steps.entry(step.kind()).or_default() += 1;
            warn!(?step, %error, "step failed; retrying next pass");
        }
    }
}

/// One address step, logged once done. `unprogrammed` and `withdrawn` are the VIPs whose
/// frontends this pass failed to program, and those it withdrew for that.
async fn address_step<A: AddressTable>(
    step: &Step,
    addresses: &A,
    unprogrammed: &BTreeSet<IpAddr>,
    withdrawn: &BTreeSet<IpAddr>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    match step {
        Step::AddAddress(ip) if unprogrammed.contains(ip) => {
            warn!(address = %ip, "not assuming address {ip}: its frontends failed to program");
            Err("frontend not programmed".into())
        }
        Step::AddAddress(ip) => {
            let r = addresses.add(*ip).await;
            if r.is_ok() {
                info!(address = %ip, "assuming address {ip}");
            }
            r.map_err(Into::into)
        }
        Step::RenewAddress(ip) if withdrawn.contains(ip) => {
            Err("withdrawn: a frontend is not programmed".into())
        }
        Step::RenewAddress(ip) => {
            let r = addresses.add(*ip).await;
            if r.is_ok() {
                debug!(address = %ip, "address lifetime renewed");
            }
            r.map_err(Into::into)
        }
        Step::RemoveAddress(ip) => {
            let r = addresses.remove(*ip).await;
            if r.is_ok() {
                info!(address = %ip, "forfeiting address {ip}");
            }
            r.map_err(Into::into)
        }
        other => Err(format!("{} is not an address step", other.kind()).into()),
    }
}

/// Takes the VIP of a frontend that failed to program off the interface (absent already: fine).
/// Returns whether it is off.
async fn withdraw_unprogrammed<A: AddressTable>(
    addresses: &A,
    id: FrontendId,
    error: &(dyn Error + Send + Sync),
) -> bool {
    let ip = id.vip;
    match addresses.remove(ip).await {
        Ok(()) => {
            warn!(address = %ip, frontend = %id, %error,
                "withdrawing address {ip}: frontend {id} could not be programmed");
            true
        }
        Err(remove) => {
            warn!(address = %ip, frontend = %id, error = %remove,
                "frontend {id} could not be programmed and its address could not be withdrawn");
            false
        }
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
