//! `driftless demo`: a local fleet on loopback, end to end, telling its story as it goes.

use super::{CliError, CliResult};
use crate::agent::control::ControlRequest;
use anyhow::{anyhow, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Start a fleet of agents on 127.0.0.1 under a temporary directory, sign an example
/// definition, publish it to one node, watch every node converge, undo a hand edit (drift),
/// and show the fleet from another node. Cleans up everything it started, also on Ctrl-C.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many agents
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=50))]
    pub nodes: u16,
    /// Leave the fleet running (printing how to reach it) until Ctrl-C
    #[arg(long)]
    pub keep: bool,
    /// Run the demo on booted Debian hosts with systemd as PID 1 (systemd-nspawn on a
    /// bridge, driftless as a systemd service) instead of processes on loopback; needs root,
    /// builds a Debian root file system on first use (see docs/hosts.md)
    #[arg(long)]
    pub hosts: bool,
}

#[path = "demo_hosts.rs"]
mod hosts;

const BASE: &str = include_str!("../../definitions/base.toml");
const NTP: &str = include_str!("../../definitions/templates/ntp.conf.j2");
/// Any step of the story that takes longer than this has failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(a: Args) -> CliResult {
    if a.hosts {
        return hosts::run(a.nodes, a.keep);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::failed)?;
    let dir = tempdir().map_err(CliError::failed)?;
    let result = rt.block_on(async {
        tokio::select! {
            r = story(&dir, a.nodes as usize, a.keep) => r,
            _ = tokio::signal::ctrl_c() => { println!("\ninterrupted: stopping the fleet"); Ok(()) }
        }
    });
    // Dropping the runtime's tasks killed the agents (kill_on_drop); now their files.
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(CliError::failed)?;
    Ok(0)
}

/// A new directory of its own (mkdtemp): never one a killed demo left behind.
fn tempdir() -> anyhow::Result<PathBuf> {
    Ok(tempfile::Builder::new()
        .prefix("driftless-demo-")
        .tempdir()?
        .keep())
}

struct Node {
    control: PathBuf,
    root: PathBuf,
    _child: tokio::process::Child,
}

fn say(t0: Instant, msg: impl AsRef<str>) {
    println!("[{:>6.2}s] {}", t0.elapsed().as_secs_f64(), msg.as_ref());
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the driftless binary")
}

/// Run a driftless subcommand to completion, returning stdout; an error carries stderr.
async fn cli(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(exe()?)
        .args(args)
        .output()
        .await?;
    if !out.status.success() {
        return Err(anyhow!(
            "driftless {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn status(n: &Node) -> Option<Value> {
    crate::agent::control::request(&n.control, &ControlRequest::Status).ok()
}

async fn fleet(n: &Node) -> Option<Value> {
    crate::agent::control::request(&n.control, &ControlRequest::Fleet).ok()
}

/// Poll `check` every 20 ms until it holds or the step times out.
async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(anyhow!("timed out waiting for {what}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn story(dir: &Path, count: usize, keep: bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    say(
        t0,
        format!(
            "a fleet of {count} agents on 127.0.0.1, everything under {}",
            dir.display()
        ),
    );
    cli(&["keygen", "--out", &s(&dir.join("release/release"))]).await?;
    let trust = dir.join("trust");
    std::fs::create_dir_all(&trust)?;
    std::fs::copy(dir.join("release/release.pub"), trust.join("release.pub"))?;
    std::fs::write(trust.join("trust.toml"), "fleet = \"demo\"\n")?;
    say(
        t0,
        "release key made; every node trusts its public half (fleet `demo`)",
    );

    let mut nodes = Vec::new();
    let mut first_addr = String::new();
    for i in 0..count {
        let port = free_port()?;
        let nd = dir.join(format!("node{}", i + 1));
        let root = nd.join("root");
        std::fs::create_dir_all(&root)?;
        let control = nd.join("control.sock");
        let addr = format!("/ip4/127.0.0.1/tcp/{port}");
        let mut args = vec![
            "agent".to_string(),
            "--listen".into(),
            addr.clone(),
            "--state-dir".into(),
            s(&nd.join("state")),
            "--root".into(),
            s(&root),
            "--trust".into(),
            s(&trust),
            "--control".into(),
            s(&control),
            "--labels".into(),
            format!("role=demo,n={}", i + 1),
        ];
        if i == 0 {
            first_addr = addr.clone();
        } else {
            args.push("--peer".into());
            args.push(first_addr.clone());
        }
        let log = std::fs::File::create(nd.join("agent.log"))?;
        let child = tokio::process::Command::new(exe()?)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        nodes.push(Node {
            control,
            root,
            _child: child,
        });
    }
    for (i, n) in nodes.iter().enumerate() {
        until(&format!("node{} to answer", i + 1), || async {
            status(n)
                .await
                .is_some_and(|v| v["peers"]["active"].as_u64() > Some(0))
        })
        .await?;
    }
    say(
        t0,
        format!("{count} agents up and connected (node1 is the bootstrap peer of the others)"),
    );

    let def = dir.join("definitions/base.toml");
    std::fs::create_dir_all(dir.join("definitions/templates"))?;
    std::fs::write(&def, BASE)?;
    std::fs::write(dir.join("definitions/templates/ntp.conf.j2"), NTP)?;
    let bundle = dir.join("base-1.bundle");
    cli(&[
        "sign",
        &s(&def),
        "--key",
        &s(&dir.join("release/release.key")),
        "--version",
        "1",
        "--fleet",
        "demo",
        "--out",
        &s(&bundle),
    ])
    .await?;
    say(t0, "signed definitions/base.toml as base v1");
    let published = Instant::now();
    let answer = cli(&["publish", &s(&bundle), "--to", &s(&nodes[0].control)]).await?;
    say(t0, format!("published to node1 only: {}", answer.trim()));
    let mut done: Vec<Option<Duration>> = vec![None; count];
    let deadline = Instant::now() + STEP_TIMEOUT;
    while done.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            return Err(anyhow!("timed out waiting for every node to apply base v1"));
        }
        for (i, n) in nodes.iter().enumerate() {
            if done[i].is_none() {
                if let Some(v) = status(n).await {
                    if v["channels"]["base"]["state"] == "applied"
                        && v["channels"]["base"]["version"] == 1
                    {
                        done[i] = Some(published.elapsed());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, d) in done.iter().enumerate() {
        println!(
            "          node{} applied base v1 {:>5} ms after publish",
            i + 1,
            d.map(|d| d.as_millis()).unwrap_or(0)
        );
    }
    say(
        t0,
        "every node converged, fetching the bundle from its peers",
    );

    let victim = &nodes[count / 2];
    let motd = victim.root.join("etc/motd");
    let before = std::fs::read_to_string(&motd)?;
    std::fs::write(&motd, "hand-edited: someone logged in and changed this\n")?;
    let edited = Instant::now();
    say(
        t0,
        format!("someone edits /etc/motd by hand on node{}", count / 2 + 1),
    );
    until("the drift to be undone", || async {
        std::fs::read_to_string(&motd).is_ok_and(|t| t == before)
    })
    .await?;
    say(
        t0,
        format!(
            "drift undone on node{} after {} ms (inotify saw the write)",
            count / 2 + 1,
            edited.elapsed().as_millis()
        ),
    );
    let watcher = &nodes[count - 1];
    let victim_id = status(victim)
        .await
        .map(|v| v["node"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    until("the drift to show in another node's fleet view", || async {
        let Some(v) = fleet(watcher).await else {
            return false;
        };
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        nodes
            .iter()
            .any(|n| n["node"] == victim_id.as_str() && n["drift"]["corrected"].as_u64() >= Some(1))
            && nodes.len() == count
            && nodes
                .iter()
                .all(|n| n["channels"]["base"]["state"] == "applied")
    })
    .await?;
    say(t0, format!("node{count} sees the drift in its fleet view (the audit-only sshd file counts as drift found, never corrected):"));
    print!(
        "{}",
        cli(&["fleet", "--control", &s(&watcher.control)]).await?
    );

    if keep {
        println!("\nthe fleet keeps running; try:");
        for (i, n) in nodes.iter().enumerate() {
            println!(
                "  driftless status --control {}    # node{}",
                n.control.display(),
                i + 1
            );
        }
        println!("  driftless fleet --control {}", nodes[0].control.display());
        println!(
            "  logs: {}/node*/agent.log; Ctrl-C stops the fleet and removes {}",
            dir.display(),
            dir.display()
        );
        futures::future::pending::<()>().await;
    }
    say(t0, "done: stopping the fleet and removing its files");
    Ok(())
}
