//! Who may speak for the fleet, with real agent processes on loopback:
//!
//! 1. Ten agents of an admitted fleet start with no certificate (they talk to no one), the
//!    operator admits each from the `node.pub` it wrote, and each picks its certificate up
//!    without a restart; labels come from the certificates.
//! 2. Two rogues, one with a certificate signed by its own "admission" key and one with none
//!    (an open-fleet agent that knows the fleet name), point at the fleet: neither gets a
//!    conversation, a place in any fleet view, nor a bundle.
//! 3. A node revoked while the fleet runs drops out of every fleet view; its restart gets
//!    nowhere.
//! 4. A new trust root with a new release key spreads from one node to all; a bundle signed
//!    by the rotated-out key is then refused, one signed by the new key applies everywhere, and
//!    a restarted node keeps the new root.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use common::path_str;
use fleet::*;
use std::time::Duration;

const NODES: usize = 10;
const DEADLINE: Duration = Duration::from_secs(30);
const MOTD: &str = "/etc/motd";

fn web(v: u64) -> String {
    format!(
        "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"{MOTD}\"\ncontent = \"v{v} on {{{{ node.labels.n }}}}\\n\"\n"
    )
}

fn motd(v: u64, n: usize) -> String {
    format!("v{v} on {n}\n")
}

fn fleet_ids(a: &Agent) -> Option<Vec<String>> {
    let v = a.try_fleet()?;
    Some(
        v["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["node"].as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn only_admitted_nodes_speak_for_the_fleet() {
    let mut f = LocalFleet::new("admit");
    let admission = f.ws.keygen("admission");
    let root = f.ws.keygen("root");
    let release = f.release.clone();
    f.trust = f.roles_dir("trust-roles", 1, &[&release], 1, &admission, &root);

    // --- 1. Start without certificates, admit, picked up without a restart.
    for i in 0..NODES {
        let a = f.add();
        if i > 0 {
            let door = f.agents[0].multiaddr(false);
            f.agents[a].peers.push(door);
        }
        if i < 2 {
            f.agents[a].metrics = Some(free_port());
        }
        f.agents[a].spawn();
        f.agents[a].wait_ready(DEADLINE);
        let s = f.agents[a].status();
        assert_eq!(
            s["admission"], "pending",
            "node{i} before its certificate: {s:#}"
        );
    }
    // Nobody talks before being admitted.
    assert_eq!(f.agents[3].status()["peers"]["active"], 0);
    for i in 0..NODES {
        let state = f.agents[i].state.clone();
        f.admit(
            &path_str(&state.join("node.pub")),
            &admission,
            &format!("n={i},role=web"),
            &state.join("node.cert"),
        )
        .ok();
    }
    f.wait("every node to take its certificate on", DEADLINE, || {
        f.agents
            .iter()
            .all(|a| a.try_status().is_some_and(|s| s["admission"] == "admitted"))
            .then_some(())
    });
    let s5 = f.agents[5].status();
    assert_eq!(
        s5["labels"]["n"], "5",
        "labels from the certificate: {s5:#}"
    );
    assert_eq!(s5["labels"]["role"], "web", "{s5:#}");
    assert!(s5["certificate"]["expires"].is_string(), "{s5:#}");
    assert_eq!(s5["certificate"]["near_expiry"], false, "{s5:#}");

    let all: Vec<usize> = (0..NODES).collect();
    let ids: Vec<String> = f.agents.iter().map(|a| a.id.clone().unwrap()).collect();
    let v1 = f.sign("web", &web(1), 1);
    f.publish(&v1, &path_str(&f.agents[0].control)).ok();
    for (i, a) in f.agents.iter().enumerate() {
        f.wait(&format!("node{i} to converge to v1"), DEADLINE, || {
            (a.read(MOTD)? == motd(1, i)).then_some(())
        });
    }
    f.wait(
        "node3's fleet view to list all ten, labels from certificates",
        DEADLINE,
        || {
            let v = f.agents[3].try_fleet()?;
            let nodes = v["nodes"].as_array()?;
            (nodes.len() == NODES
                && nodes.iter().all(|n| {
                    let i = ids.iter().position(|id| n["node"] == id.as_str());
                    i.is_some_and(|i| n["labels"]["n"] == i.to_string().as_str())
                }))
            .then_some(())
        },
    );

    // --- 2. Rogues: a self-made certificate, and none at all.
    let rogue_admission = f.ws.keygen("rogue-admission");
    let rogue_trust = f.ws.trust_dir(
        "trust-rogue",
        &[&release, &rogue_admission, &root],
        Some(&format!(
            "fleet = \"{}\"\n[release]\nkeys = [\"release.pub\"]\n[admission]\nkeys = [\"rogue-admission.pub\"]\n[root]\nkeys = [\"root.pub\"]\n",
            f.fleet_name
        )),
    );
    let open_trust = f.ws.trust_dir(
        "trust-open",
        &[&release],
        Some(&format!("fleet = \"{}\"\n", f.fleet_name)),
    );
    let doors = [f.agents[0].multiaddr(false), f.agents[1].multiaddr(false)];
    let mut forged = Agent::new("rogue-forged", f.ws.path("rogue-forged"), &rogue_trust);
    let mut bare = Agent::new("rogue-bare", f.ws.path("rogue-bare"), &open_trust);
    for r in [&mut forged, &mut bare] {
        r.peers.extend(doors.iter().cloned());
        r.labels = "n=0,role=web".into();
    }
    forged.labels.clear();
    forged.spawn();
    forged.wait_ready(DEADLINE);
    f.admit(
        &path_str(&forged.state.join("node.pub")),
        &rogue_admission,
        "n=0,role=web",
        &forged.state.join("node.cert"),
    )
    .ok();
    bare.spawn();
    bare.wait_ready(DEADLINE);
    let (n0, n1) = (&f.agents[0], &f.agents[1]);
    f.wait(
        "node0 and node1 to refuse the forged certificate and the bare peer",
        DEADLINE,
        || {
            let forged_refused =
                n0.refused("untrusted_certificate") + n1.refused("untrusted_certificate");
            let bare_refused = n0.refused("not_admitted") + n1.refused("not_admitted");
            (forged_refused >= 1 && bare_refused >= 1).then_some(())
        },
    );
    let v2 = f.sign("web", &web(2), 2);
    f.publish(&v2, &path_str(&f.agents[4].control)).ok();
    for (i, a) in f.agents.iter().enumerate() {
        f.wait(&format!("node{i} to converge to v2"), DEADLINE, || {
            (a.read(MOTD)? == motd(2, i)).then_some(())
        });
    }
    f.wait_signed(&all, "web", 2, DEADLINE);
    for r in [&forged, &bare] {
        let s = r.status();
        assert_eq!(s["peers"]["active"], 0, "{} has peers: {s:#}", r.name);
        assert!(
            s["channels"].as_object().is_some_and(|c| c.is_empty()),
            "{} received a bundle: {s:#}",
            r.name
        );
        assert!(r.read(MOTD).is_none(), "{} converged", r.name);
    }
    let rogue_ids = [forged.id.clone().unwrap(), bare.id.clone().unwrap()];
    for (i, a) in f.agents.iter().enumerate() {
        let seen = fleet_ids(a).unwrap();
        assert_eq!(seen.len(), NODES, "node{i}'s fleet view: {seen:?}");
        for r in &rogue_ids {
            assert!(!seen.contains(r), "node{i} lists rogue {r}");
        }
    }
    drop(forged);
    drop(bare);

    // --- 3. Revoke node9 while the fleet runs.
    let revoked = f.ws.path("revoked-1.bundle");
    f.ws.run([
        "revoke".to_string(),
        ids[9].clone(),
        "--key".into(),
        path_str(&admission.private),
        "--version".into(),
        "1".into(),
        "--trust".into(),
        path_str(&f.trust),
        "--out".into(),
        path_str(&revoked),
    ])
    .ok();
    f.publish(&revoked, &path_str(&f.agents[2].control))
        .ok()
        .stdout_has(&["revocation list v1"]);
    let live: Vec<usize> = (0..NODES - 1).collect();
    f.wait("node9 to leave every fleet view", DEADLINE, || {
        live.iter()
            .all(|&i| {
                let s = f.agents[i].try_status();
                s.is_some_and(|s| s["trust"]["revocations_version"] == 1)
                    && fleet_ids(&f.agents[i]).is_some_and(|v| !v.contains(&ids[9]))
            })
            .then_some(())
    });
    f.wait("node9 to lose its peers", DEADLINE, || {
        (f.agents[9].try_status()?["peers"]["active"] == 0).then_some(())
    });
    f.agents[9].kill9();
    let kept_out = f.agents[0].refused("kept_out") + f.agents[0].refused("revoked");
    f.agents[9].spawn();
    f.agents[9].wait_ready(DEADLINE);
    f.wait("node0 to turn the restarted node9 away", DEADLINE, || {
        (f.agents[0].refused("kept_out") + f.agents[0].refused("revoked") > kept_out).then_some(())
    });
    let s9 = f.agents[9].status();
    assert_eq!(s9["peers"]["active"], 0, "revoked node9 got peers: {s9:#}");
    for &i in &live {
        let seen = fleet_ids(&f.agents[i]).unwrap();
        assert!(!seen.contains(&ids[9]), "node{i} lists node9 again");
    }

    // --- 4. Rotate the release key out with a new trust root.
    let release2 = f.ws.keygen("release2");
    let next = f.roles_dir("trust-v2", 2, &[&release2], 1, &admission, &root);
    let signed_root = f.ws.path("root-2.signed");
    f.sign_root(&next, &[&root], &signed_root).ok();
    f.publish(&signed_root, &f.agents[1].multiaddr(true))
        .ok()
        .stdout_has(&["trust root v2"]);
    f.wait("every node to take trust root v2 on", DEADLINE, || {
        live.iter()
            .all(|&i| {
                f.agents[i]
                    .try_status()
                    .is_some_and(|s| s["trust"]["root_version"] == 2)
            })
            .then_some(())
    });
    // The same root again is fine; another root under the same version is refused.
    f.publish(&signed_root, &path_str(&f.agents[4].control))
        .ok()
        .stdout_has(&["already in force"]);
    let other = f.roles_dir("trust-v2-other", 2, &[&release], 1, &admission, &root);
    let other_root = f.ws.path("root-2-other.signed");
    f.sign_root(&other, &[&root], &other_root).ok();
    let out = f.publish(&other_root, &path_str(&f.agents[4].control));
    assert_eq!(out.code, 1, "a second root v2: {out:?}");
    assert!(out.stderr.contains("conflicting_content"), "{out:?}");
    // The old release key signs nothing now, wherever it is handed in.
    let stale = f.sign("web", &web(3), 3);
    let out = f.publish(&stale, &path_str(&f.agents[6].control));
    assert_eq!(out.code, 1, "a bundle by the rotated-out key: {out:?}");
    let def = f.ws.write("defs/web-v3-new.toml", &web(3));
    let fresh = f.ws.sign(
        &def,
        &[&release2],
        3,
        "bundles/web-v3-new.bundle",
        &["--fleet", &f.fleet_name],
    );
    f.publish(&fresh, &path_str(&f.agents[6].control)).ok();
    for &i in &live {
        let a = &f.agents[i];
        f.wait(&format!("node{i} to converge to v3"), DEADLINE, || {
            (a.read(MOTD)? == motd(3, i)).then_some(())
        });
    }
    // A restart keeps the rotated root (it lives in the state directory).
    f.agents[3].kill9();
    f.agents[3].spawn();
    f.agents[3].wait_ready(DEADLINE);
    let s3 = f.agents[3].status();
    assert_eq!(s3["trust"]["root_version"], 2, "{s3:#}");
    assert_eq!(s3["trust"]["revocations_version"], 1, "{s3:#}");
    assert_eq!(
        f.agents[9].read(MOTD),
        Some(motd(2, 9)),
        "revoked node9 moved on"
    );
}
