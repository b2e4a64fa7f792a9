//! A fleet in the middle of an upgrade: agents of the previous release (message format 2,
//! protocol `/driftless/1/`) and of this one (format 3) in one fleet. Every stream to an older
//! agent negotiates the older protocol and carries format 2, so releases spread through both
//! kinds of node, statuses reach every fleet view, and no agent ever refuses a peer.
//!
//! An agent of the previous release is played by this build with `DRIFTLESS_TEST_LEGACY_WIRE`
//! set: it speaks only the older protocol, and refuses (and counts) a message of a newer
//! format on it, as the older agent's decoder would.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use fleet::*;
use std::time::Duration;

const NODES: usize = 6;
const DEADLINE: Duration = Duration::from_secs(40);

fn web(version: u64) -> String {
    format!(
        "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/motd\"\ncontent = \"release {version}\\n\"\n"
    )
}

#[test]
fn old_and_new_agents_spread_releases_and_statuses_to_each_other() {
    let mut f = LocalFleet::new("upgrade");
    let legacy = |i: usize| i % 2 == 1;
    for i in 0..NODES {
        let a = f.add();
        f.agents[a].metrics = Some(free_port());
        if legacy(i) {
            f.agents[a]
                .env
                .push(("DRIFTLESS_TEST_LEGACY_WIRE".into(), "1".into()));
        }
        // Old nodes join through a new one and new nodes through an old one, so both kinds
        // of link carry the membership protocol from the start.
        if i > 0 {
            let door = f.agents[if i == 1 { 0 } else { 1 }].multiaddr(false);
            f.agents[a].peers.push(door);
        }
        f.agents[a].spawn();
        f.agents[a].wait_ready(DEADLINE);
    }
    for (i, a) in f.agents.iter().enumerate() {
        assert_eq!(
            a.log_text().contains("speaking message format 2 only"),
            legacy(i),
            "{}: {}",
            a.name,
            a.log_tail(10)
        );
    }
    let all: Vec<usize> = (0..NODES).collect();
    // A release handed to an old node, then one handed to a new node, reach every node.
    for (version, to) in [(1, 1), (2, 4)] {
        let b = f.sign("web", &web(version), version);
        let out = f.publish(&b, &f.agents[to].control.to_string_lossy());
        assert_eq!(out.code, 0, "publish v{version}: {}", out.stderr);
        let content = format!("release {version}\n");
        f.wait_applied(&all, "web", version, ("/etc/motd", &content), DEADLINE);
    }
    // Statuses cross both ways: an old node's and a new node's fleet views list every node
    // at v2.
    let ids: Vec<String> = f.agents.iter().map(|a| a.id.clone().unwrap()).collect();
    for viewer in [NODES - 1, NODES - 2] {
        f.wait(
            &format!("node{viewer}'s fleet view to list all {NODES} nodes at web v2"),
            DEADLINE,
            || {
                let v = f.agents[viewer].try_fleet()?;
                let nodes = v["nodes"].as_array()?;
                ids.iter()
                    .all(|id| {
                        nodes
                            .iter()
                            .any(|n| n["node"] == *id && n["channels"]["web"]["version"] == 2)
                    })
                    .then_some(())
            },
        );
    }
    // And nobody refused anything: no message of a newer format reached an old node, and
    // nothing written for an old node failed to decode anywhere.
    for a in &f.agents {
        for reason in ["format_newer_than_stream", "malformed", "unknown_format"] {
            assert_eq!(
                a.refused(reason),
                0,
                "{} refused {reason}:\n{}",
                a.name,
                a.log_tail(20)
            );
        }
    }
}
