//! `driftless status` and `driftless fleet`: ask the local agent over its control socket.

use super::{CliError, CliResult};
use crate::agent::control::{self, ControlRequest};
use std::path::PathBuf;

/// This node: labels, versions per channel, drift, health, peers.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The agent's control socket [default: /run/driftless/control.sock]
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
    /// Print the JSON object (keys documented in README.md)
    #[arg(long)]
    pub json: bool,
}

/// Every node, as this node sees it (full rows for its zone and for failing nodes, exact
/// counts for the whole fleet).
#[derive(clap::Args, Debug)]
pub struct FleetArgs {
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Show one node's full signed status, by peer id. A node of another zone is asked of its
    /// zone on demand (a large fleet's view holds only summaries of other zones); waits up to
    /// 5 s. With --json: {"node": {...as in `fleet --json`}, "from": "..."}.
    #[arg(long, value_name = "PEER_ID")]
    pub node: Option<String>,
}

fn socket(p: Option<PathBuf>) -> PathBuf {
    p.unwrap_or_else(|| PathBuf::from(crate::agent::config::DEFAULT_CONTROL))
}

pub fn status(a: StatusArgs) -> CliResult {
    let v =
        control::request(&socket(a.control), &ControlRequest::Status).map_err(CliError::failed)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    println!("node      {}", v["node"].as_str().unwrap_or("?"));
    println!(
        "fleet     {} (admission: {})",
        v["fleet"].as_str().unwrap_or("?"),
        v["admission"].as_str().unwrap_or("?")
    );
    println!("labels    {}", labels(&v["labels"]));
    println!(
        "peers     {} active, {} passive",
        v["peers"]["active"], v["peers"]["passive"]
    );
    if let Some(ch) = v["channels"].as_object() {
        for (name, c) in ch {
            let stale = if c["stale"].as_bool() == Some(true) {
                " (stale: expired)"
            } else {
                ""
            };
            println!(
                "channel   {name}: v{} {}{stale}{}",
                c["version"],
                c["state"].as_str().unwrap_or("?"),
                c["applied_at"]
                    .as_str()
                    .map(|t| format!(", applied {t}"))
                    .unwrap_or_default()
            );
            if let Some(r) = c.get("rollout").filter(|r| !r.is_null()) {
                println!("rollout   {name} v{}: {}", r["version"], rollout_line(r));
            }
        }
    }
    let d = &v["drift"];
    let last = d["last"]["path"]
        .as_str()
        .map(|p| {
            format!(
                ", last {p} at {}",
                d["last"]["time"].as_str().unwrap_or("?")
            )
        })
        .unwrap_or_default();
    println!(
        "drift     {} detected, {} corrected{last}",
        d["detected"], d["corrected"]
    );
    let h = &v["health"];
    let failing: Vec<&str> = h["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["ok"] == false)
                .filter_map(|c| c["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "health    {}",
        if h["ok"] == true {
            "ok".to_string()
        } else {
            format!("FAILING: {}", failing.join(", "))
        }
    );
    println!("watch     {}", v["watch"]["mode"].as_str().unwrap_or("?"));
    Ok(0)
}

/// One line: this node's wave, what holds it back or the halt, and the waves' tallies.
fn rollout_line(r: &serde_json::Value) -> String {
    let state = if let Some(h) = r.get("halted").filter(|h| !h.is_null()) {
        format!("HALTED: {}", h["why"].as_str().unwrap_or("?"))
    } else if let Some(w) = r.get("waiting").filter(|w| !w.is_null()) {
        format!(
            "this node in wave {}, {} (wave {})",
            r["wave"],
            w["why"].as_str().unwrap_or("?"),
            w["wave"]
        )
    } else {
        format!("this node in wave {}, free to apply", r["wave"])
    };
    let waves: Vec<String> = r["waves"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    format!(
                        "w{}: {}/{} applied, {} unhealthy",
                        w["wave"], w["applied"], w["nodes"], w["unhealthy"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("{state}; {}", waves.join("; "))
}

fn labels(v: &serde_json::Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn fleet_header() {
    println!(
        "{:<14} {:<22} {:<28} {:<9} {:<8} LAST SEEN",
        "NODE", "LABELS", "CHANNELS", "DRIFT", "HEALTH"
    );
}

fn fleet_row(n: &serde_json::Value) {
    let id = n["node"].as_str().unwrap_or("?");
    let short = if id.len() > 12 {
        format!("…{}", &id[id.len() - 12..])
    } else {
        id.to_string()
    };
    let chans = n["channels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| {
                    format!(
                        "{k}=v{}:{}",
                        c["version"],
                        c["state"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let drift = format!("{}/{}", n["drift"]["detected"], n["drift"]["corrected"]);
    let health = if n["health"]["ok"] == true {
        "ok"
    } else {
        "FAILING"
    };
    println!(
        "{short:<14} {:<22} {chans:<28} {drift:<9} {health:<8} {}",
        labels(&n["labels"]),
        n["last_seen"].as_str().unwrap_or("?")
    );
}

/// `fleet --node ID`: one node's status.
fn fleet_node(control: PathBuf, id: String, json: bool) -> CliResult {
    let v =
        control::request(&control, &ControlRequest::Node { node: id }).map_err(CliError::failed)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    let n = &v["node"];
    fleet_header();
    fleet_row(n);
    println!(
        "{} (from {}); failing checks: {}",
        n["node"].as_str().unwrap_or("?"),
        v["from"].as_str().unwrap_or("?"),
        n["health"]["checks"]
            .as_array()
            .map(|c| c
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into())
    );
    Ok(0)
}

pub fn fleet(a: FleetArgs) -> CliResult {
    if let Some(id) = a.node {
        return fleet_node(socket(a.control), id, a.json);
    }
    let v =
        control::request(&socket(a.control), &ControlRequest::Fleet).map_err(CliError::failed)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(0);
    }
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    fleet_header();
    for n in &nodes {
        fleet_row(n);
    }
    let total = v["counts"]["nodes"].as_u64().unwrap_or(nodes.len() as u64);
    println!(
        "{} node(s) shown; {} in the fleet as seen from {}",
        nodes.len(),
        total,
        v["seen_from"].as_str().unwrap_or("?")
    );
    if let Some(r) = v["rollouts"].as_object() {
        for (name, r) in r {
            println!("  rollout {name} v{}: {}", r["version"], rollout_line(r));
        }
    }
    if let Some(ch) = v["counts"]["channels"].as_object() {
        for (name, rows) in ch {
            let parts: Vec<String> = rows
                .as_array()
                .map(|r| {
                    r.iter()
                        .map(|x| {
                            format!(
                                "v{} {}{}: {}",
                                x["version"],
                                x["state"].as_str().unwrap_or("?"),
                                if x["healthy"] == true {
                                    ""
                                } else {
                                    " unhealthy"
                                },
                                x["nodes"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("  {name}: {}", parts.join(", "));
        }
    }
    Ok(0)
}
