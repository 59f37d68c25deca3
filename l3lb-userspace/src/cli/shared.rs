//! Flags `l3lb run` and `l3lb allocate` share (which Services are l3lb's, the allocator's Lease)
//! and their validation, written once.
use std::time::Duration;

use clap::{ArgAction, Args};
use ipnet::IpNet;

use super::{ConfigError, parse::parse_duration};
use crate::{core::class::ClassFilter, core::config::LeaseConfig};

#[derive(Debug, Args)]
pub struct ClassArgs {
    /// `spec.loadBalancerClass` of the Services l3lb serves and allocates addresses for.
    /// Services of any other class belong to another implementation and are left alone.
    #[arg(long, env = "L3LB_LOAD_BALANCER_CLASS", default_value = crate::core::class::DEFAULT_CLASS)]
    pub load_balancer_class: String,

    /// Be the cluster's default load balancer: also serve and allocate for LoadBalancer Services
    /// without a `spec.loadBalancerClass` (as MetalLB, kube-vip and Cilium do). `false` while
    /// another implementation (MetalLB, a cloud controller, k3s's ServiceLB) handles those.
    #[arg(long, env = "L3LB_DEFAULT_LOAD_BALANCER", default_value_t = true,
        num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub default_load_balancer: bool,
}

impl ClassArgs {
    pub fn filter(self) -> Result<ClassFilter, ConfigError> {
        if self.load_balancer_class.trim().is_empty() {
            return Err(ConfigError::EmptyClass);
        }
        Ok(ClassFilter {
            class: self.load_balancer_class,
            default: self.default_load_balancer,
        })
    }
}

#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Name of the coordination.k8s.io Lease the allocators elect their leader with: the holder
    /// alone writes `status.loadBalancer.ingress` from the L3lbPools.
    #[arg(long, env = "L3LB_LEASE_NAME", default_value = "l3lb-allocator")]
    pub lease_name: String,

    /// Namespace of that Lease; default: the process's own (its service account's, or the
    /// kubeconfig context's).
    #[arg(long, env = "L3LB_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long an allocator's Lease lasts without renewal: when the holder dies, another takes
    /// over about this long after its last renewal (at once when it stops cleanly). The holder
    /// renews every fifth of it and stops allocating when renewals fail for three fifths.
    #[arg(long, env = "L3LB_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
}

impl LeaseArgs {
    pub fn config(self) -> Result<LeaseConfig, ConfigError> {
        if self.lease_duration < Duration::from_secs(5) {
            return Err(ConfigError::LeaseTooShort);
        }
        Ok(LeaseConfig {
            name: self.lease_name,
            namespace: self.lease_namespace.filter(|n| !n.is_empty()),
            duration: self.lease_duration,
        })
    }
}

/// CIDRs must name their network: `198.51.100.1/24` is almost certainly a typo.
pub fn check_networks<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Result<(), ConfigError> {
    for p in nets {
        if p.trunc() != *p {
            return Err(ConfigError::HostBits {
                given: *p,
                network: p.trunc(),
            });
        }
    }
    Ok(())
}

pub fn check_resync(resync: Duration) -> Result<(), ConfigError> {
    match resync < Duration::from_secs(1) {
        true => Err(ConfigError::ResyncTooShort),
        false => Ok(()),
    }
}
