//! Groups of zones on real agents (`--zone-bits 2 --group-bits 1`: four zones in two groups of
//! two): each node lists its own zone's nodes in full, counts the other zone of its group from
//! that zone's row and the other group from its group row, and `fleet --node` fetches the
//! signed status of a node of the other group on demand. Bad group bits are refused at start.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use common::{path_str, Workspace};
use driftless_core::proto::fleet::zone_of;
use ed25519_dalek::SigningKey;
use fleet::*;
use std::time::Duration;

const NODES: usize = 8;
const ZONE_BITS: u8 = 2;
const DEADLINE: Duration = Duration::from_secs(40);

/// Node `i`'s zone: `i % 4`, so zones 0 and 1 (nodes 0, 1, 4, 5) are group 0, zones 2 and 3
/// (nodes 2, 3, 6, 7) group 1.
fn zone(i: usize) -> u32 {
    (i % 4) as u32
}

fn group(i: usize) -> u32 {
    zone(i) >> 1
}

/// A fixed key for node `i` that falls in [`zone`]`(i)`.
fn node_key(i: usize) -> SigningKey {
    fixed_key_where(11, i, |k| zone_of(ZONE_BITS, k) == zone(i))
}

#[test]
fn a_grouped_fleet_counts_every_node_and_fetches_a_node_of_another_group() {
    let mut f = LocalFleet::new("groups");
    for i in 0..NODES {
        let a = f.add();
        f.agents[a].set_node_key(&node_key(i));
        f.agents[a].extra.extend([
            "--zone-bits".into(),
            ZONE_BITS.to_string(),
            "--group-bits".into(),
            "1".into(),
        ]);
        if i > 0 {
            let door = f.agents[0].multiaddr(false);
            f.agents[a].peers.push(door);
        }
        f.agents[a].spawn();
        f.agents[a].wait_ready(DEADLINE);
        // The core runs with the groups asked for (it logs what its fleet view is built on,
        // before the control socket answers).
        let want = format!(
            "fleet view in 4 zones in 2 groups (zone_bits 2, group_bits 1); this node is in zone {}, group {}",
            zone(i),
            group(i)
        );
        let log = f.agents[a].log_text();
        assert!(log.contains(&want), "node{i} lacks {want:?}:\n{log}");
    }
    let v1 = f.sign(
        "web",
        "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/motd\"\ncontent = \"groups\\n\"\n",
        1,
    );
    let out = f.publish(&v1, &f.agents[3].control.to_string_lossy());
    assert_eq!(out.code, 0, "publish: {}", out.stderr);
    let all: Vec<usize> = (0..NODES).collect();
    f.wait_applied(&all, "web", 1, ("/etc/motd", "groups\n"), DEADLINE);

    // Every node lists its own zone (two nodes) and counts all eight at v1: its zone from
    // the table, the other zone of its group from that zone's row, the other group (four
    // nodes in two zones whose rows it does not hold) from the group row.
    let ids: Vec<String> = f.agents.iter().map(|a| a.id.clone().unwrap()).collect();
    for i in 0..NODES {
        let view = f.wait(
            &format!("node{i}'s view to count {NODES} nodes at v1, 2 of them listed"),
            DEADLINE,
            || {
                let v = f.agents[i].try_fleet()?;
                let listed = v["nodes"].as_array()?.len();
                let at_v1: u64 = v["counts"]["channels"]["web"]
                    .as_array()?
                    .iter()
                    .filter(|r| r["version"] == 1 && r["state"] == "applied")
                    .map(|r| r["nodes"].as_u64().unwrap_or(0))
                    .sum();
                (v["counts"]["nodes"] == NODES && at_v1 == NODES as u64 && listed == 2).then_some(v)
            },
        );
        for n in view["nodes"].as_array().unwrap() {
            let j = ids.iter().position(|id| n["node"] == *id).unwrap();
            assert_eq!(
                zone(j),
                zone(i),
                "node{i} lists node{j} of another zone: {view:#}"
            );
        }
    }

    // From node 0 (group 0): a node of the other group and one of the other zone of its own
    // group, on demand, each its own signed status with its channels.
    let ctl = path_str(&f.agents[0].control);
    for j in [3, 6, 1] {
        assert_ne!(zone(j), zone(0));
        let out = f.agents[0].run(&[
            "fleet".into(),
            "--control".into(),
            ctl.clone(),
            "--node".into(),
            ids[j].clone(),
            "--json".into(),
        ]);
        assert_eq!(out.code, 0, "fleet --node node{j}: {}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        assert_eq!(v["node"]["node"], ids[j], "node{j}: {v:#}");
        assert_eq!(v["node"]["channels"]["web"]["version"], 1, "node{j}: {v:#}");
        assert_eq!(
            v["node"]["channels"]["web"]["state"], "applied",
            "node{j}: {v:#}"
        );
        assert_eq!(v["from"], "its zone, on demand", "node{j}: {v:#}");
    }
}

/// `driftless agent ARGS` in a fresh workspace, with `toml` as its config file when given:
/// it must exit 2 at once, say `needles` on stderr, and leave no state directory or control
/// socket behind.
#[track_caller]
fn refused(args: &[&str], toml: Option<&str>, needles: &[&str]) {
    let ws = Workspace::new();
    let (state, control) = (ws.path("state"), ws.path("control.sock"));
    let mut argv: Vec<String> = vec![
        "agent".into(),
        "--listen".into(),
        "/ip4/127.0.0.1/tcp/0".into(),
        "--state-dir".into(),
        path_str(&state),
        "--control".into(),
        path_str(&control),
        "--trust".into(),
        path_str(&ws.path("trust")),
    ];
    if let Some(text) = toml {
        argv.extend(["--config".into(), path_str(&ws.write("agent.toml", text))]);
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    ws.run(&argv).code(2).stderr_has(needles);
    assert!(
        !state.exists(),
        "{args:?} {toml:?}: the state directory was made"
    );
    assert!(
        !control.exists(),
        "{args:?} {toml:?}: a control socket was made"
    );
}

#[test]
fn group_bits_that_leave_nothing_to_group_stop_the_agent_naming_where_and_why() {
    refused(
        &["--zone-bits", "2", "--group-bits", "2"],
        None,
        &["--group-bits: 2 group bits", "must be less than zone_bits"],
    );
    refused(
        &["--group-bits", "1"],
        None,
        &[
            "--group-bits: 1 group bits",
            "zone_bits is 0",
            "set zone_bits too",
        ],
    );
    refused(
        &[],
        Some("zone_bits = 3\ngroup_bits = 4\n"),
        &[
            "agent.toml: field `group_bits`: 4 group bits",
            "of the 8 zones (zone_bits 3, from /",
            "agent.toml: field `zone_bits`)",
            "must be less than zone_bits",
        ],
    );
    // Not a number of bits at all: clap's and the TOML parser's own errors, also exit 2.
    refused(
        &["--zone-bits", "4", "--group-bits", "300"],
        None,
        &["invalid value '300' for '--group-bits"],
    );
    refused(
        &[],
        Some("zone_bits = 4\ngroup_bits = 300\n"),
        &["agent.toml", "group_bits = 300", "expected u8"],
    );
}
