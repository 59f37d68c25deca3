//! L2 mode's per-node Leases against the test API server: a node creates its Lease, each renewal
//! changes it so that other nodes' liveness judgement sees it alive, and once renewals stop it is
//! judged dead after the timeout, on the judge's clock (passed in: no sleeping here).
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use l3lb_tests::apiserver::ApiServer;
use l3lb_userspace::{
    core::l2::Liveness,
    k8s::l2_lease::{Renewer, TIMEOUT, lease_name, marker, node_of},
};

const NS: &str = "l3lb-system";

#[tokio::test]
async fn renewals_keep_a_node_alive_and_their_absence_kills_it() {
    let api = ApiServer::new();
    let addr = api.listen().await.unwrap();
    let client = ApiServer::client(addr).unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let mut a = Renewer::new(client.clone(), NS, "node-a", Default::default());
    let mut b = Renewer::new(client.clone(), NS, "node-b", Default::default());
    a.renew_once().await.unwrap();
    b.renew_once().await.unwrap();
    assert_eq!(
        api.lease_holder(NS, &lease_name("node-a")).as_deref(),
        Some("node-a")
    );

    // node-c judges, on its own clock (milliseconds since it started).
    let ms = Duration::from_millis;
    let mut liveness = Liveness::new(TIMEOUT);
    let observe = |liveness: &mut Liveness, list: &[Lease], now| {
        for l in list {
            liveness.observe(node_of(l).unwrap(), &marker(l), now);
        }
    };
    let list = leases.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 2);
    observe(&mut liveness, &list, ms(0));

    // node-a keeps renewing, node-b stops.
    for t in [1000, 2000, 3000] {
        a.renew_once().await.unwrap();
        let list = leases.list(&Default::default()).await.unwrap().items;
        observe(&mut liveness, &list, ms(t));
    }
    let alive = liveness.judge("node-a", ms(3000)).alive;
    assert_eq!(
        alive,
        ["node-a".to_owned()].into(),
        "node-b stopped at 0 ms"
    );

    // A renewer that lost its record (a restart) reads the Lease back and carries on.
    let mut a_again = Renewer::new(client.clone(), NS, "node-a", Default::default());
    a_again.renew_once().await.unwrap();
    let list = leases.list(&Default::default()).await.unwrap().items;
    observe(&mut liveness, &list, ms(4500));
    assert!(liveness.is_alive("node-a", ms(6000)));
    assert!(!liveness.is_alive("node-a", ms(6501)));
}
