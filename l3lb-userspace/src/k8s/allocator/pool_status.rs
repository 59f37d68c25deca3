//! The leader writes each L3lbPool's status (total, used and free addresses, the Services holding
//! them) when it differs from what the pool shows, so `kubectl get l3lbpools` answers "how full
//! is it, and who has it".
use std::collections::BTreeMap;

use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tracing::debug;

use crate::core::pool::{L3lbPool, PoolStatus};

/// Patches the status of every pool in `objects` whose status differs from `usage`; a failed
/// write is retried next pass (returns whether one failed).
pub async fn write(
    client: &Client,
    objects: &[&L3lbPool],
    usage: &BTreeMap<String, PoolStatus>,
) -> bool {
    let api: Api<L3lbPool> = Api::all(client.clone());
    let mut failed = false;
    for pool in objects {
        let Some(name) = pool.metadata.name.as_deref() else {
            continue;
        };
        let Some(want) = usage.get(name) else {
            continue;
        };
        if pool.status.as_ref() == Some(want) {
            continue;
        }
        let patch = Patch::Merge(json!({"status": want}));
        if let Err(error) = api
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            debug!(pool = name, %error, "cannot write the pool's status; retrying next pass");
            failed = true;
        }
    }
    failed
}
