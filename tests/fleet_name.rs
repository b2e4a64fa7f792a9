//! Nodes of another fleet get no conversation: the libp2p protocol name carries the fleet
//! name, so an agent of fleet `beta` pointed at a node of fleet `alpha` never joins it, never
//! shows in its fleet view, and a bundle of `beta` cannot even be handed to `alpha`.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use fleet::*;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn an_agent_of_another_fleet_cannot_join() {
    let mut alpha = LocalFleet::new("alpha");
    let mut beta = LocalFleet::new("beta");
    let a0 = alpha.add();
    alpha.agents[a0].spawn();
    alpha.agents[a0].wait_ready(DEADLINE);
    let door = alpha.agents[a0].multiaddr(false);

    // The outsider starts first, pointed at alpha's node.
    let b0 = beta.add();
    beta.agents[b0].peers.push(door.clone());
    beta.agents[b0].spawn();
    beta.agents[b0].wait_ready(DEADLINE);

    // A member of alpha joins through the same door after it.
    let a1 = alpha.add();
    alpha.agents[a1].peers.push(door.clone());
    alpha.agents[a1].spawn();
    alpha.agents[a1].wait_ready(DEADLINE);
    let members = alpha.wait("alpha's two nodes to see each other", DEADLINE, || {
        let v = alpha.agents[a0].try_fleet()?;
        let n = v["nodes"].as_array()?.len();
        (n >= 2 && alpha.agents[a0].try_status()?["peers"]["active"].as_u64()? >= 1).then_some(v)
    });
    let outsider = beta.agents[b0].id.clone().unwrap();
    let ids: Vec<&str> = members["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "alpha's fleet view: {members:#}");
    assert!(
        !ids.contains(&outsider.as_str()),
        "the beta node joined alpha: {members:#}"
    );
    let b = beta.agents[b0].status();
    assert_eq!(b["peers"]["active"], 0, "beta node has peers: {b:#}");

    // A beta bundle handed to alpha over libp2p: no common protocol, nothing handed over.
    let bundle = beta.sign("web", "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/motd\"\ncontent = \"beta\\n\"\n", 1);
    let out = beta.publish(&bundle, &door);
    assert_ne!(
        out.code, 0,
        "publishing a beta bundle to alpha succeeded: {}",
        out.stdout
    );
    assert!(
        alpha.agents[a0].read("/etc/motd").is_none(),
        "alpha applied beta's bundle"
    );
}
