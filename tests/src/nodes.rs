//! The lab's Node objects, as a kubelet and the node IPAM controller would write them: each
//! node's pod CIDRs and addresses, which the daemons check endpoints against.
use serde_json::{Value, json};

use crate::scenario::{Cluster, node_name};

impl Cluster {
    /// Node `i`'s Node object with `labels` (an object) and `spec.unschedulable`.
    pub fn node_object(&self, i: usize, labels: Value, unschedulable: bool) -> Value {
        let lab = &self.lab;
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(i), "labels": labels},
            "spec": {
                "podCIDR": lab.pod_cidrs(i)[0],
                "podCIDRs": lab.pod_cidrs(i),
                "unschedulable": unschedulable,
            },
            "status": {"addresses": [
                {"type": "InternalIP", "address": lab.node_ip(i).to_string()},
                {"type": "InternalIP", "address": lab.node_ip6(i).to_string()},
                {"type": "Hostname", "address": node_name(i)},
            ]},
        })
    }

    /// Creates or replaces node `i`'s Node object.
    pub fn apply_node(&self, i: usize, labels: Value, unschedulable: bool) -> anyhow::Result<()> {
        self.api.apply(self.node_object(i, labels, unschedulable))
    }
}
