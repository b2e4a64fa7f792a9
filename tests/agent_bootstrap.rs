//! Start-up order: a node whose bootstrap peer is not up yet, and to which other nodes
//! bootstrap first, still joins through its own bootstrap peer once that is up, instead of
//! staying on an island made of the nodes that joined through it (seen on 100 agents started
//! at once: the nodes that bootstrap through node 2 or 3 never got a release published to
//! node 1).

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use fleet::*;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn a_node_joins_through_its_bootstrap_peer_even_after_others_joined_through_it() {
    let mut f = LocalFleet::new("bootstrap");
    let a = f.add();
    let b = f.add();
    let c = f.add();
    // a will listen here, but starts last.
    let a_addr = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    f.agents[a].listen = a_addr.clone();
    f.agents[b].peers.push(a_addr);
    f.agents[b].spawn();
    f.agents[b].wait_ready(DEADLINE);
    let b_addr = f.agents[b].multiaddr(false);
    f.agents[c].peers.push(b_addr);
    f.agents[c].spawn();
    f.agents[c].wait_ready(DEADLINE);
    // c joined through b: b has a neighbour before it could reach its own bootstrap peer.
    f.wait("b and c to be neighbours", DEADLINE, || {
        (f.agents[b].try_status()?["peers"]["active"] == 1).then_some(())
    });
    f.agents[a].spawn();
    f.agents[a].wait_ready(DEADLINE);
    // A release handed to a reaches c only if b joined through a.
    let v1 = f.sign("web", "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/motd\"\ncontent = \"one fleet\\n\"\n", 1);
    let to = f.agents[a].control.to_string_lossy().to_string();
    f.publish(&v1, &to).ok();
    f.wait_applied(
        &[a, b, c],
        "web",
        1,
        ("/etc/motd", "one fleet\n"),
        Duration::from_secs(40),
    );
}
