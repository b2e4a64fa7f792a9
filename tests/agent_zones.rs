//! A fleet view in zones on real agents (`--zone-bits 1`: two zones): each node lists its own
//! zone's nodes in full and counts the other zone from its summary row, and `fleet --node`
//! fetches the full signed status of a node of the other zone on demand (SPEC, "Scale": any
//! node's status from that node's zone).

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use driftless_core::proto::fleet::zone_of;
use ed25519_dalek::SigningKey;
use fleet::*;
use std::time::Duration;

const NODES: usize = 8;
const DEADLINE: Duration = Duration::from_secs(40);

/// A fixed key for node `i` that falls in zone `i % 2` of two.
fn node_key(i: usize) -> SigningKey {
    fixed_key_where(7, i, |k| zone_of(1, k) == (i % 2) as u32)
}

#[test]
fn a_node_of_another_zone_is_counted_by_its_row_and_fetched_on_demand() {
    let mut f = LocalFleet::new("zones");
    for i in 0..NODES {
        let a = f.add();
        f.agents[a].set_node_key(&node_key(i));
        f.agents[a].extra.extend(["--zone-bits".into(), "1".into()]);
        if i > 0 {
            let door = f.agents[0].multiaddr(false);
            f.agents[a].peers.push(door);
        }
        f.agents[a].spawn();
        f.agents[a].wait_ready(DEADLINE);
    }
    let v1 = f.sign(
        "web",
        "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/motd\"\ncontent = \"zones\\n\"\n",
        1,
    );
    let out = f.publish(&v1, &f.agents[3].control.to_string_lossy());
    assert_eq!(out.code, 0, "publish: {}", out.stderr);
    let all: Vec<usize> = (0..NODES).collect();
    f.wait_applied(&all, "web", 1, ("/etc/motd", "zones\n"), DEADLINE);

    // Node 0 lists its own zone (nodes 0, 2, 4, 6) and counts all eight, the other zone
    // from its row.
    let ids: Vec<String> = f.agents.iter().map(|a| a.id.clone().unwrap()).collect();
    let view = f.wait(
        "node0's view to count 8 nodes at v1, 4 of them listed",
        DEADLINE,
        || {
            let v = f.agents[0].try_fleet()?;
            let listed = v["nodes"].as_array()?.len();
            let at_v1: u64 = v["counts"]["channels"]["web"]
                .as_array()?
                .iter()
                .filter(|r| r["version"] == 1)
                .map(|r| r["nodes"].as_u64().unwrap_or(0))
                .sum();
            (v["counts"]["nodes"] == NODES && at_v1 == NODES as u64 && listed == NODES / 2)
                .then_some(v)
        },
    );
    for n in view["nodes"].as_array().unwrap() {
        let i = ids.iter().position(|id| n["node"] == *id).unwrap();
        assert_eq!(i % 2, 0, "node0 lists node{i} of the other zone: {view:#}");
    }

    // A node of the other zone, on demand: its own signed status, with its channels.
    let ctl = f.agents[0].control.to_string_lossy().into_owned();
    let ask = |id: &str, json: bool| {
        let mut args = vec!["fleet".to_string(), "--control".into(), ctl.clone()];
        args.extend(["--node".to_string(), id.to_string()]);
        if json {
            args.push("--json".into());
        }
        f.agents[0].run(&args)
    };
    let out = ask(&ids[5], true);
    assert_eq!(out.code, 0, "fleet --node: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["node"]["node"], ids[5], "{v:#}");
    assert_eq!(v["node"]["channels"]["web"]["version"], 1, "{v:#}");
    assert_eq!(v["node"]["channels"]["web"]["state"], "applied", "{v:#}");
    assert_eq!(v["from"], "its zone, on demand", "{v:#}");
    // A node of the own zone comes from the table at once; text output names it.
    let out = ask(&ids[2], false);
    assert_eq!(out.code, 0, "fleet --node: {}", out.stderr);
    assert!(
        out.stdout.contains(&ids[2]) && out.stdout.contains("own zone"),
        "{}",
        out.stdout
    );
    // Not a peer id: a clear error and a non-zero exit.
    let out = ask("not-a-node", false);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("not a node's peer id"),
        "{}",
        out.stderr
    );
}
