//! A progressive rollout on a real fleet of 20 agent processes: a release whose health check
//! fails on most nodes halts in its first wave, the nodes of that wave roll back to the
//! version before, later waves never apply it, and `fleet` on any node says so.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use driftless_core::proto::rollout::wave_of;
use driftless_core::proto::PeerId;
use ed25519_dalek::SigningKey;
use fleet::*;
use std::time::Duration;

const NODES: usize = 20;
const DEADLINE: Duration = Duration::from_secs(40);
const WAVES: [f64; 3] = [0.3, 0.6, 1.0];
/// Nodes 1–6 draw wave 0 for version 2, the others a later wave: five sick nodes (1, 2, 3, 5,
/// 6) and a healthy one (4) in the first wave. With random node keys, one run in ~30 drew
/// fewer than two sick nodes into wave 0, and a halt needs two witnesses, so the release
/// halted in wave 1 instead.
const FIRST_WAVE: std::ops::RangeInclusive<usize> = 1..=6;

/// A node key for node `i` that draws wave 0 for version 2 exactly when `i` is in
/// [`FIRST_WAVE`]: the first of a fixed series of keys that does (deterministic, so every run
/// has the same waves).
fn node_key(i: usize) -> SigningKey {
    fixed_key_where(0, i, |k| {
        (wave_of(k.stable_hash(), 2, &WAVES) == 0) == FIRST_WAVE.contains(&i)
    })
}

fn definition(version: u64, rollout: bool) -> String {
    // v1 writes "ok" everywhere; v2 writes "bad" on three nodes of four (n % 4 != 0).
    let content = if version == 1 {
        "ok\\n".to_string()
    } else {
        "{% if node.labels.n|int % 4 == 0 %}ok{% else %}bad{% endif %}\\n".to_string()
    };
    let mut d = format!(
        "name = \"app\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/app.conf\"\ncontent = \"{content}\"\n\
         [[check]]\nname = \"app-ok\"\ncommand = \"grep -qx ok \\\"$DRIFTLESS_ROOT/etc/app.conf\\\"\"\ninterval = \"1s\"\n"
    );
    if rollout {
        d.push_str("[rollout]\nwaves = [0.3, 0.6, 1.0]\nbake = \"4s\"\nmax_unhealthy = 0.1\non_failure = \"rollback\"\n");
    }
    d
}

#[test]
fn a_bad_release_halts_in_its_first_wave_and_rolls_back() {
    let mut f = LocalFleet::new("rollout");
    for i in 0..NODES {
        let a = f.add();
        f.agents[a].labels = format!("n={i}");
        f.agents[a].set_node_key(&node_key(i));
        if i > 0 {
            let door = f.agents[0].multiaddr(false);
            f.agents[a].peers.push(door);
        }
        f.agents[a].spawn();
        f.agents[a].wait_ready(DEADLINE);
    }
    let v1 = f.sign("app", &definition(1, false), 1);
    let out = f.publish(&v1, &f.agents[0].control.to_string_lossy());
    assert_eq!(out.code, 0, "publish v1: {}", out.stderr);
    f.wait("every node to run v1, healthy", DEADLINE, || {
        f.agents
            .iter()
            .all(|a| {
                a.try_status().is_some_and(|s| {
                    s["channels"]["app"]["version"] == 1
                        && s["channels"]["app"]["state"] == "applied"
                        && s["health"]["ok"] == true
                        && s["health"]["checks"]
                            .as_array()
                            .is_some_and(|c| !c.is_empty())
                })
            })
            .then_some(())
    });

    let v2 = f.sign("app", &definition(2, true), 2);
    let out = f.publish(&v2, &f.agents[5].control.to_string_lossy());
    assert_eq!(out.code, 0, "publish v2: {}", out.stderr);
    let start = std::time::Instant::now();
    let halted = loop {
        let statuses: Vec<serde_json::Value> = f
            .agents
            .iter()
            .map(|a| a.try_status().unwrap_or_default())
            .collect();
        let done = statuses.iter().all(|s| {
            let c = &s["channels"]["app"];
            !c["rollout"]["halted"].is_null() && c["version"] == 1 && c["state"] == "held"
        });
        if done {
            break statuses;
        }
        if start.elapsed() > DEADLINE {
            let summary: Vec<String> = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| format!("node{i}: {}", s["channels"]["app"]))
                .collect();
            panic!(
                "timed out waiting for every node to see the halt and run v1 (held):\n{}\n{}",
                summary.join("\n"),
                f.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut first_wave = 0;
    for (i, s) in halted.iter().enumerate() {
        let r = &s["channels"]["app"]["rollout"];
        assert_eq!(r["halted"]["wave"], 0, "node{i}: {r:#}");
        let wave = r["wave"].as_u64().unwrap();
        let log = f.agents[i].log_text();
        let applied_v2 = log.contains("channel=app version=2 why=NewVersion");
        if wave == 0 {
            first_wave += 1;
        } else {
            assert!(
                !applied_v2,
                "node{i} of wave {wave} applied the halted release:\n{log}"
            );
        }
        assert_eq!(
            f.agents[i].read("/etc/app.conf").as_deref(),
            Some("ok\n"),
            "node{i} (wave {wave}) does not run v1's file"
        );
    }
    assert_eq!(
        first_wave,
        FIRST_WAVE.count(),
        "the nodes' keys were chosen to put nodes 1-6 in wave 0"
    );
    // The fleet view of any node says so too.
    let v = f.agents[NODES - 1].fleet();
    let r = &v["rollouts"]["app"];
    assert_eq!(r["version"], 2, "{v:#}");
    assert_eq!(r["halted"]["wave"], 0, "{v:#}");
    let text = f.agents[NODES - 1].run(&[
        "fleet".to_string(),
        "--control".into(),
        f.agents[NODES - 1].control.to_string_lossy().into_owned(),
    ]);
    assert!(text.stdout.contains("HALTED"), "{}", text.stdout);
    eprintln!(
        "[rollout] halted in wave 0 with {first_wave} of {NODES} nodes in it; every node back on v1"
    );
}
