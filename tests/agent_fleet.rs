//! A fleet of real `driftless agent` processes on 127.0.0.1, driven only through the CLI
//! (`publish`, `status --json`, `fleet --json`), their files and their metrics:
//! publish to one node and all apply; drift on one node is undone and seen from another;
//! a node killed with SIGKILL catches up after restart with no re-publish; older, tampered
//! and conflicting bundles change nothing anywhere and are never forwarded; `publish` over
//! libp2p with and without a peer id; one agent per state directory; a stale control socket
//! is replaced; the JSON keys of `status` and `fleet`.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use common::*;
use fleet::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

const NODES: usize = 10;
/// Generous on a shared 2-core machine running debug builds; the figures printed are what
/// matters, the deadline only stops a test that would otherwise hang.
const DEADLINE: Duration = Duration::from_secs(20);

const MOTD: &str = "/etc/motd";

fn motd(version: u64) -> String {
    format!("web v{version}\n")
}

/// Two files; the first is the one drift is made on.
fn web(version: u64) -> String {
    format!(
        r#"
name = "web"

[[resource]]
type = "file"
path = "/etc/motd"
content = "web v{version}\n"
mode = "0644"

[[resource]]
type = "file"
path = "/etc/app/app.conf"
content = "port = 80{version:02}\n"
"#
    )
}

/// Start `n` agents: node0 first, then every other one with node0 as its bootstrap peer
/// (with the peer id on even nodes, without it on odd ones: both forms are allowed), each with
/// metrics on a port of its own. Waits until each answers on its control socket and has at
/// least one active peer.
fn start_fleet(tag: &str, n: usize) -> LocalFleet {
    let mut f = LocalFleet::new(tag);
    for i in 0..n {
        let k = f.add();
        let a = &mut f.agents[k];
        a.labels = format!("role=web,n={i}");
        a.metrics = Some(free_port());
    }
    // node7 is killed and restarted on the same address: a fixed port, outside the range
    // the kernel hands out for port 0, so nothing takes it while node7 is down.
    f.agents[7.min(n - 1)].listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    f.agents[0].spawn();
    f.agents[0].wait_ready(DEADLINE);
    for i in 1..n {
        let boot = f.agents[0].multiaddr(i % 2 == 0);
        f.agents[i].peers = vec![boot];
        f.agents[i].spawn();
    }
    for i in 1..n {
        f.agents[i].wait_ready(DEADLINE);
    }
    let all: Vec<usize> = (0..n).collect();
    f.wait("every node to have an active peer", DEADLINE, || {
        all.iter()
            .all(|&i| {
                f.agents[i]
                    .try_status()
                    .and_then(|s| s["peers"]["active"].as_u64())
                    .is_some_and(|p| p >= 1)
            })
            .then_some(())
    });
    f
}

/// Every node's (root, state directory) snapshot.
fn snapshots(f: &LocalFleet) -> Vec<(Snapshot, Snapshot)> {
    f.agents
        .iter()
        .map(|a| (snapshot(&a.root), snapshot_state(&a.state)))
        .collect()
}

/// What a node's status says about a channel, for comparisons: version, state, applied_at
/// and the held bundle.
fn channel_view(a: &Agent, channel: &str) -> Value {
    let c = a.status()["channels"][channel].clone();
    serde_json::json!([c["version"], c["state"], c["applied_at"], c["held"]])
}

const REASONS: [&str; 3] = ["rolled_back", "bad_signature", "conflicting_content"];

fn refusals(f: &LocalFleet) -> Vec<BTreeMap<&'static str, u64>> {
    f.agents
        .iter()
        .map(|a| {
            let page = a.metrics_text();
            REASONS
                .iter()
                .map(|r| (*r, metric(&page, "driftless_refused_messages_total", r)))
                .collect()
        })
        .collect()
}

/// The key set the spec promises for one node in `status --json` (and `fleet --json`).
#[track_caller]
fn assert_status_keys(s: &Value, who: &str) {
    for k in ["node", "labels", "channels", "drift", "health"] {
        assert!(s.get(k).is_some(), "{who}: no `{k}` in {s:#}");
    }
    assert!(
        s["node"].as_str().is_some_and(|n| n.starts_with("12D3")),
        "{who}: node is a peer id: {s:#}"
    );
    assert!(
        s["labels"]
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        "{who}: labels is a map of strings: {s:#}"
    );
    assert!(s["channels"].is_object(), "{who}: channels is a map: {s:#}");
    for (name, c) in s["channels"].as_object().unwrap() {
        assert!(
            c["version"].is_u64(),
            "{who}: channels.{name}.version: {s:#}"
        );
        assert!(
            ["applied", "pending", "failed", "held"].contains(&c["state"].as_str().unwrap_or("")),
            "{who}: channels.{name}.state: {s:#}"
        );
    }
    assert!(
        s["drift"]["detected"].is_u64(),
        "{who}: drift.detected: {s:#}"
    );
    assert!(
        s["drift"]["corrected"].is_u64(),
        "{who}: drift.corrected: {s:#}"
    );
    assert!(s["health"]["ok"].is_boolean(), "{who}: health.ok: {s:#}");
    assert!(
        s["health"]["checks"].is_array(),
        "{who}: health.checks: {s:#}"
    );
}

#[test]
fn a_fleet_of_ten_agents_converges_undoes_drift_catches_up_and_refuses_bad_bundles() {
    let t0 = Instant::now();
    let mut f = start_fleet("fleet10", NODES);
    let all: Vec<usize> = (0..NODES).collect();
    eprintln!(
        "[fleet] {NODES} agents up and connected in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // --- 1. publish to one node's control socket: all ten apply it.
    let v1 = f.sign("web", &web(1), 1);
    let t = Instant::now();
    f.publish(&v1, &path_str(&f.agents[3].control))
        .ok()
        .stdout_has(&["accepted web v1"]);
    let took = f.wait_applied(&all, "web", 1, (MOTD, &motd(1)), DEADLINE);
    eprintln!(
        "[fleet] publish -> all {NODES} applied v1: {:.3} s (files); {:.3} s (statuses too)",
        took.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    for a in &f.agents {
        assert_eq!(
            a.read("/etc/app/app.conf").as_deref(),
            Some("port = 8001\n"),
            "{}",
            a.name
        );
    }

    // --- 7. the keys of `status --json` and `fleet --json`.
    for (i, a) in f.agents.iter().enumerate() {
        let s = a.status();
        assert_status_keys(&s, &a.name);
        assert_eq!(s["node"].as_str(), a.id.as_deref(), "{}", a.name);
        assert_eq!(s["admission"], "open", "{}: {s:#}", a.name);
        assert_eq!(
            s["labels"],
            serde_json::json!({"role": "web", "n": i.to_string()}),
            "{}",
            a.name
        );
        let c = &s["channels"]["web"];
        assert_eq!(c["version"], 1, "{}: {s:#}", a.name);
        assert_eq!(c["state"], "applied", "{}: {s:#}", a.name);
        assert_eq!(c["stale"], false, "{}: {s:#}", a.name);
        let at = c["applied_at"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: applied_at: {s:#}", a.name));
        humantime::parse_rfc3339(at)
            .unwrap_or_else(|e| panic!("{}: applied_at {at:?}: {e}", a.name));
        assert_eq!(s["drift"]["detected"], 0, "{}: {s:#}", a.name);
        assert_eq!(s["drift"]["corrected"], 0, "{}: {s:#}", a.name);
        assert!(
            s["drift"].get("last").is_some(),
            "{}: drift.last: {s:#}",
            a.name
        );
        assert_eq!(
            s["health"],
            serde_json::json!({"ok": true, "checks": []}),
            "{}",
            a.name
        );
    }
    // Every node's fleet view fills up with all ten, each at v1 (the local node included).
    let ids: Vec<String> = f.agents.iter().map(|a| a.id.clone().unwrap()).collect();
    let t = Instant::now();
    let view = f.wait(
        "node5's fleet view to list all ten nodes at web v1",
        DEADLINE,
        || {
            let v = f.agents[5].try_fleet()?;
            let nodes = v["nodes"].as_array()?;
            let at_v1 = |id: &str| {
                nodes
                    .iter()
                    .any(|n| n["node"] == id && n["channels"]["web"]["version"] == 1)
            };
            ids.iter().all(|id| at_v1(id)).then_some(v)
        },
    );
    eprintln!(
        "[fleet] node5's fleet view complete {:.3} s after every node applied",
        t.elapsed().as_secs_f64()
    );
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), NODES, "one row per node: {view:#}");
    for n in nodes {
        assert_status_keys(n, "fleet row");
        let seen = n["last_seen"]
            .as_str()
            .unwrap_or_else(|| panic!("last_seen: {n:#}"));
        humantime::parse_rfc3339(seen).unwrap_or_else(|e| panic!("last_seen {seen:?}: {e}"));
    }
    assert!(
        nodes
            .iter()
            .any(|n| n["node"].as_str() == f.agents[5].id.as_deref()),
        "fleet lists the local node: {view:#}"
    );

    // --- 2. drift on node6 is undone, counted there, and seen from node2.
    let victim = &f.agents[6];
    let path = victim.in_root(MOTD);
    let t = Instant::now();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut fh| std::io::Write::write_all(&mut fh, b"edited by hand\n"))
        .expect("append to the managed file");
    wait_every(
        "node6 to undo the drift on /etc/motd",
        DEADLINE,
        Duration::from_millis(1),
        || (victim.read(MOTD).as_deref() == Some(motd(1).as_str())).then_some(()),
        || f.logs(),
    );
    let undone = t.elapsed();
    let s = f.wait("node6's status to count the drift", DEADLINE, || {
        let s = victim.try_status()?;
        (s["drift"]["detected"].as_u64()? >= 1).then_some(s)
    });
    assert!(s["drift"]["corrected"].as_u64() >= Some(1), "{s:#}");
    assert!(
        s["drift"]["last"]["path"]
            .as_str()
            .is_some_and(|p| p.contains(MOTD)),
        "drift.last names the file: {s:#}"
    );
    humantime::parse_rfc3339(s["drift"]["last"]["time"].as_str().unwrap_or(""))
        .expect("drift.last.time");
    let victim_id = victim.id.clone().unwrap();
    // node2's view fills in by zone syncs, one peer a round: wait for the drift *and* every
    // node, since nothing so far waited for node2's view to be complete.
    let view = f.wait(
        "node2's fleet view to show node6's drift and every node",
        DEADLINE,
        || {
            let v = f.agents[2].try_fleet()?;
            let nodes = v["nodes"].as_array()?;
            let row = nodes.iter().find(|n| n["node"] == victim_id.as_str())?;
            let all = ids
                .iter()
                .all(|id| nodes.iter().any(|n| n["node"] == id.as_str()));
            (all && row["drift"]["detected"].as_u64()? >= 1
                && row["drift"]["corrected"].as_u64()? >= 1)
                .then_some(v.clone())
        },
    );
    // A drifting node is notable, and still listed once.
    for id in &ids {
        let rows = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["node"] == id.as_str())
            .count();
        assert_eq!(rows, 1, "node {id} in node2's fleet view: {view:#}");
    }
    eprintln!(
        "[fleet] drift on node6: undone in {:.0} ms; seen in node2's fleet view after {:.3} s",
        undone.as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64()
    );
    for (i, a) in f.agents.iter().enumerate().filter(|(i, _)| *i != 6) {
        assert_eq!(a.read(MOTD).as_deref(), Some(motd(1).as_str()), "node{i}");
    }

    // --- 5a. publish over libp2p, with the peer id: all apply v2.
    let v2 = f.sign("web", &web(2), 2);
    let t = Instant::now();
    f.publish(&v2, &f.agents[1].multiaddr(true))
        .ok()
        .stdout_has(&["accepted web v2"]);
    let took = f.wait_applied(&all, "web", 2, (MOTD, &motd(2)), DEADLINE);
    eprintln!("[fleet] publish --to MULTIADDR/p2p/ID -> all applied v2: {:.3} s (files); {:.3} s (statuses)", took.as_secs_f64(), t.elapsed().as_secs_f64());

    // --- 4. older, tampered and conflicting bundles, to control sockets and over libp2p:
    // each refused with exit 1, nothing changes on any node, the refusal is counted and
    // logged where it was handed over, and nowhere else.
    let older = v1.clone();
    let tampered = f.path("bundles/web-v2-tampered.bundle");
    {
        let mut bytes = std::fs::read(&v2).unwrap();
        let at = bytes
            .windows(6)
            .position(|w| w == b"web v2")
            .expect("the content is in the bundle");
        bytes[at + 5] = b'9';
        std::fs::write(&tampered, bytes).unwrap();
    }
    let conflicting = f.sign("web-other", &web(2).replace("web v2", "other v2"), 2);
    // Quiet first: every node has signed (and persisted) the status that says v2.
    f.wait_signed(&all, "web", 2, DEADLINE);
    let before = snapshots(&f);
    let views: Vec<Value> = f.agents.iter().map(|a| channel_view(a, "web")).collect();
    let counts0 = refusals(&f);
    let bad: [(&str, &std::path::Path, usize, bool); 5] = [
        ("rolled_back", older.as_path(), 8, false),
        ("rolled_back", older.as_path(), 2, true),
        ("bad_signature", tampered.as_path(), 9, false),
        ("bad_signature", tampered.as_path(), 5, true),
        ("conflicting_content", conflicting.as_path(), 0, false),
    ];
    for (reason, bundle, to, libp2p) in bad {
        let dest = if libp2p {
            f.agents[to].multiaddr(to % 2 == 0)
        } else {
            path_str(&f.agents[to].control)
        };
        f.publish(bundle, &dest).code(1).stderr_has(&[reason]);
    }
    let after = snapshots(&f);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_same(&b.0, &a.0, &format!("node{i}: the root"));
        assert_same(&b.1, &a.1, &format!("node{i}: the state directory"));
        assert_eq!(
            channel_view(&f.agents[i], "web"),
            views[i],
            "node{i}: status of channel web"
        );
    }
    let mut expected = counts0.clone();
    for (reason, _, to, _) in bad {
        *expected[to].get_mut(reason).unwrap() += 1;
    }
    assert_eq!(refusals(&f), expected, "refusals counted where handed over");
    for (reason, _, to, _) in bad {
        let log = f.agents[to].log_text();
        assert!(
            log.contains("refused") && log.contains(reason),
            "node{to}'s log shows the refusal ({reason})\n{}",
            f.agents[to].log_tail(20)
        );
    }
    // A barrier instead of a sleep: a good bundle handed to the same nodes spreads to all;
    // had any bad one been forwarded, it would have reached the others first.
    let v3 = f.sign("web", &web(3), 3);
    let t = Instant::now();
    f.publish(&v3, &f.agents[8].multiaddr(false))
        .ok()
        .stdout_has(&["accepted web v3"]);
    let took = f.wait_applied(&all, "web", 3, (MOTD, &motd(3)), DEADLINE);
    eprintln!("[fleet] publish --to MULTIADDR (no id) -> all applied v3: {:.3} s (files); {:.3} s (statuses)", took.as_secs_f64(), t.elapsed().as_secs_f64());
    assert_eq!(
        refusals(&f),
        expected,
        "no other node ever saw a bad bundle"
    );

    // --- 3. kill -9 one agent, publish a newer version elsewhere, restart it: it catches up.
    f.agents[7].kill9();
    let v4 = f.sign("web", &web(4), 4);
    f.publish(&v4, &path_str(&f.agents[4].control))
        .ok()
        .stdout_has(&["accepted web v4"]);
    let others: Vec<usize> = (0..NODES).filter(|&i| i != 7).collect();
    f.wait_applied(&others, "web", 4, (MOTD, &motd(4)), DEADLINE);
    assert_eq!(
        f.agents[7].read(MOTD).as_deref(),
        Some(motd(3).as_str()),
        "node7 was down"
    );
    // Same state directory, same address (it listens on a fixed port, like a server).
    let (id7, addr7) = (f.agents[7].id.clone(), f.agents[7].addr.clone());
    let t = Instant::now();
    f.agents[7].spawn();
    wait_every(
        "node7 to catch up on /etc/motd",
        DEADLINE,
        Duration::from_millis(2),
        || (f.agents[7].read(MOTD).as_deref() == Some(motd(4).as_str())).then_some(()),
        || f.logs(),
    );
    let caught_up = t.elapsed();
    f.agents[7].wait_ready(DEADLINE);
    assert_eq!(f.agents[7].id, id7, "the node key survived kill -9");
    assert_eq!(f.agents[7].addr, addr7);
    f.wait_applied(&[7], "web", 4, (MOTD, &motd(4)), DEADLINE);
    eprintln!(
        "[fleet] node7 restarted after kill -9: its file at v4 {:.3} s after the restart, its status {:.3} s",
        caught_up.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    // New versions are not drift: four applies later, only node6 (edited by hand) has
    // counted any, and the one edit once.
    for (i, a) in f.agents.iter().enumerate() {
        let d = &a.status()["drift"];
        let want = if i == 6 { 1 } else { 0 };
        assert_eq!(
            (d["detected"].as_u64(), d["corrected"].as_u64()),
            (Some(want), Some(want)),
            "node{i}: drift counted by its own applies? {d}\n{}",
            a.log_tail(30)
        );
    }
    eprintln!(
        "[fleet] whole scenario: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn one_agent_per_state_directory_and_a_stale_control_socket_is_replaced() {
    let mut f = LocalFleet::new("lock");
    f.add();
    f.agents[0].spawn();
    f.agents[0].wait_ready(DEADLINE);
    let holder = f.agents[0].pid().unwrap();
    let first = f.agents[0].status();

    // A second agent on the same state directory (and even the same control socket) exits
    // 2, naming the holder, and leaves the first one's socket alone.
    let a = &f.agents[0];
    let mut cmd = a.command(&a.args());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut second = cmd.spawn().expect("spawn a second agent");
    let st = match second.wait_timeout(DEADLINE).unwrap() {
        Some(st) => st,
        None => {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second agent on the same state directory kept running");
        }
    };
    let mut err = String::new();
    std::io::Read::read_to_string(second.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(2), "exit code; stderr: {err}");
    assert!(
        err.contains(&path_str(&a.state)) && err.contains(&format!("pid {holder}")),
        "names the directory and the holder: {err}"
    );
    assert_eq!(
        a.status()["node"],
        first["node"],
        "the first agent still answers on its socket"
    );

    // kill -9 leaves the socket file behind; the next start replaces it.
    f.agents[0].kill9();
    let sock = f.agents[0].control.clone();
    let md = std::fs::symlink_metadata(&sock).expect("the socket file is left behind");
    assert!(md.file_type().is_socket());
    assert!(
        f.agents[0].try_status().is_none(),
        "nobody answers on a stale socket"
    );
    f.agents[0].spawn();
    f.agents[0].wait_ready(DEADLINE);
    let s = f.agents[0].status();
    assert_eq!(s["node"], first["node"], "same state directory, same node");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is mode 0600");
}
