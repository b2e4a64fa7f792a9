//! `--log-format json`: every line the agent logs is one JSON object with a level, a target
//! and the message's fields, so a log shipper can read it without parsing prose.

mod common;
#[path = "common/fleet.rs"]
mod fleet;

use fleet::*;
use std::time::Duration;

#[test]
fn json_logs_are_one_object_per_line() {
    let mut f = LocalFleet::new("jsonlogs");
    let a = f.add();
    f.agents[a].extra = vec!["--log-format".into(), "json".into()];
    f.agents[a].spawn();
    f.agents[a].wait_ready(Duration::from_secs(20));
    f.agents[a].kill9();
    let log = std::fs::read_to_string(&f.agents[a].log).expect("read the agent's log");
    // The harness writes one "----- start:" line of its own before the agent's output.
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("----- start:"))
        .collect();
    assert!(!lines.is_empty(), "the agent logged nothing");
    let mut starting = false;
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string(), "no level: {l}");
        assert!(v["target"].is_string(), "no target: {l}");
        if v["fields"]["message"] == "driftless agent starting" {
            starting = true;
            assert!(v["fields"]["peer_id"].is_string(), "no peer id: {l}");
        }
    }
    assert!(starting, "no start line among {} lines", lines.len());
}
