//! A real partition: six agents, each in a network namespace of its own; each half of them on
//! a bridge of its own in a switch namespace, the two bridges joined by one veth pair. Publish
//! on one side; cut that link until both halves have noticed (each still talks to itself);
//! publish newer things on both sides; heal; every node converges on everything, with no
//! re-publish. The root namespace sends nothing to these addresses: `publish` over libp2p runs
//! inside a node's namespace, and control sockets are files.
//!
//! Needs root (`ip netns add`); where namespaces cannot be made, the test says why and passes.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use fleet::*;
use std::time::{Duration, Instant};

const HALF: usize = 3;
const PORT: u16 = 7400;
const DEADLINE: Duration = Duration::from_secs(20);
/// From the cut until both halves have dropped each other: the spec's 10 s peer timeout.
const NOTICE: Duration = Duration::from_secs(25);
/// From the heal until every node has everything: peers re-dialled with back-off (up to 30 s),
/// then a round or two of anti-entropy.
const HEAL: Duration = Duration::from_secs(45);

fn def(channel: &str, version: u64) -> String {
    format!(
        "name = \"{channel}\"\n\n[[resource]]\ntype = \"file\"\npath = \"/etc/{channel}.conf\"\ncontent = \"{channel} v{version}\\n\"\n"
    )
}

fn file(channel: &str) -> String {
    format!("/etc/{channel}.conf")
}

fn content(channel: &str, version: u64) -> String {
    format!("{channel} v{version}\n")
}

/// Drop order: the agents, then the namespaces they ran in.
struct Partitioned {
    f: LocalFleet,
    net: Netns,
}

#[test]
fn two_halves_cut_apart_and_healed_converge_on_the_newest_of_both() {
    if let Some(why) = Netns::unavailable() {
        eprintln!("SKIPPED: network namespaces are not available here ({why})");
        return;
    }
    let t0 = Instant::now();
    let n = 2 * HALF;
    let mut p = Partitioned {
        f: LocalFleet::new("partition"),
        net: Netns::new(&[HALF, HALF]),
    };
    let (a_side, b_side): (Vec<usize>, Vec<usize>) = ((0..HALF).collect(), (HALF..n).collect());
    let all: Vec<usize> = (0..n).collect();
    // Bootstrap through the first node of each half (no peer ids: they are not known yet).
    let boot = |i: usize| format!("/ip4/{}/tcp/{PORT}", Netns::addr(i));
    for i in 0..n {
        let k = p.f.add();
        let a = &mut p.f.agents[k];
        a.netns = Some(p.net.nodes[i].clone());
        a.listen = boot(i);
        a.labels = format!("half={},n={i}", if i < HALF { "a" } else { "b" });
        a.peers = [0, HALF]
            .into_iter()
            .filter(|&b| b != i)
            .map(boot)
            .collect();
        a.spawn();
    }
    let f = &mut p.f;
    for a in f.agents.iter_mut() {
        a.wait_ready(DEADLINE);
    }
    let ids: Vec<String> = f.agents.iter().map(|a| a.id.clone().unwrap()).collect();
    f.wait("every node's fleet view to list all six", DEADLINE, || {
        all.iter()
            .all(|&i| {
                f.agents[i].try_fleet().is_some_and(|v| {
                    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                    ids.iter()
                        .all(|id| nodes.iter().any(|n| n["node"] == id.as_str()))
                })
            })
            .then_some(())
    });
    eprintln!(
        "[partition] {n} agents in {n} namespaces up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Publish on side A: everyone applies.
    let web1 = f.sign("web", &def("web", 1), 1);
    // Over libp2p from inside node0's namespace: from the root namespace, traffic to these
    // addresses would leave the machine by its default route.
    f.publish_from(0, &web1, &f.agents[1].multiaddr(true)).ok();
    f.wait_applied(&all, "web", 1, (&file("web"), &content("web", 1)), DEADLINE);

    // Cut side B off (the one link between the halves' bridges), and wait until both halves
    // have noticed: each node keeps only its own half as active peers.
    let t = Instant::now();
    p.net.segment_link(1, false);
    let f = &p.f;
    let active = |i: usize| {
        f.agents[i]
            .try_status()
            .and_then(|s| s["peers"]["active"].as_u64())
    };
    f.wait("both halves to drop the other half's peers", NOTICE, || {
        all.iter()
            .all(|&i| active(i).is_some_and(|a| a < HALF as u64))
            .then_some(())
    });
    eprintln!(
        "[partition] cut noticed by every node after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Newer things on both sides while cut: web v2 on side B, a new channel on side A.
    let web2 = f.sign("web", &def("web", 2), 2);
    let base1 = f.sign("base", &def("base", 1), 1);
    f.publish(&web2, &f.agents[HALF + 1].control.to_string_lossy())
        .ok();
    f.publish(&base1, &f.agents[2].control.to_string_lossy())
        .ok();
    f.wait_applied(
        &b_side,
        "web",
        2,
        (&file("web"), &content("web", 2)),
        DEADLINE,
    );
    f.wait_applied(
        &a_side,
        "base",
        1,
        (&file("base"), &content("base", 1)),
        DEADLINE,
    );
    // Each half kept to itself: the partition is real.
    for &i in &a_side {
        assert_eq!(
            f.agents[i].read(&file("web")),
            Some(content("web", 1)),
            "node{i} (side A) got web v2 through the cut"
        );
    }
    for &i in &b_side {
        assert_eq!(
            f.agents[i].read(&file("base")),
            None,
            "node{i} (side B) got base through the cut"
        );
    }

    // Heal: every node converges on web v2 and base v1, with no re-publish.
    let t = Instant::now();
    p.net.segment_link(1, true);
    let f = &p.f;
    f.wait_applied(&all, "web", 2, (&file("web"), &content("web", 2)), HEAL);
    f.wait_applied(&all, "base", 1, (&file("base"), &content("base", 1)), HEAL);
    eprintln!(
        "[partition] healed: every node at web v2 and base v1 after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // And each half sees the other again.
    f.wait(
        "every node's fleet view to show all six at web v2",
        DEADLINE,
        || {
            all.iter()
                .all(|&i| {
                    f.agents[i].try_fleet().is_some_and(|v| {
                        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                        ids.iter().all(|id| {
                            nodes.iter().any(|n| {
                                n["node"] == id.as_str() && n["channels"]["web"]["version"] == 2
                            })
                        })
                    })
                })
                .then_some(())
        },
    );
    eprintln!(
        "[partition] whole scenario: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
