//! Helpers for tests that run real `driftless agent` processes: a release host (key, trust
//! directory, a fleet name of its own) and agents, each with its own root, state directory,
//! control socket and log file, on loopback or inside a network namespace.
//!
//! Every agent is killed when its [`Agent`] is dropped (also when a test panics), and asks the
//! kernel to kill it if the test thread that started it dies first.
//!
//! Waiting is always for a condition with a deadline ([`LocalFleet::wait`]), never a fixed
//! sleep. On a timeout the panic message carries the tail of every agent's log.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use crate::common::{path_str, run_in, write_file, Key, Out, Workspace, BIN};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fixed node key for node `i` (the same on every run) that `wanted` accepts: the first of
/// a series of keys seeded from `tag` and `i`. For tests where what a node id decides (its
/// zone, its wave) must not be left to chance.
pub fn fixed_key_where(
    tag: u8,
    i: usize,
    wanted: impl Fn(&[u8; 32]) -> bool,
) -> ed25519_dalek::SigningKey {
    (0u32..)
        .map(|j| {
            let mut seed = [tag; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seed[8..12].copy_from_slice(&j.to_le_bytes());
            ed25519_dalek::SigningKey::from_bytes(&seed)
        })
        .find(|k| wanted(&k.verifying_key().to_bytes()))
        .expect("a key of any hash-drawn kind turns up within a few tries")
}

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// A TCP port on 127.0.0.1 that was free a moment ago, for `--metrics` (which wants a fixed
/// HOST:PORT; agents themselves listen on port 0 and report their address).
///
/// Taken below the kernel's ephemeral range, so that no agent listening on port 0 (and no
/// outgoing connection) can be handed the same port between this check and the agent's
/// start; never the same port twice in one test process.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_001));
    let mut given = GIVEN.lock().unwrap();
    for _ in 0..1000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), from..to);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {from}..{to}");
}

/// Poll `f` every [`POLL`] until it returns `Some`, or panic after `timeout` naming `what`
/// and adding `context()` (logs, usually) to the message.
#[track_caller]
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    f: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    wait_every(what, timeout, POLL, f, context)
}

/// [`wait_for`] polling every `every` (short, to time something precisely).
#[track_caller]
pub fn wait_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {:.1} s waiting for {what}\n{}",
                timeout.as_secs_f64(),
                context()
            );
        }
        std::thread::sleep(every);
    }
}

/// One agent: where it keeps things and how it was started.
pub struct Agent {
    pub name: String,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub control: PathBuf,
    /// stderr of every run of this agent, appended.
    pub log: PathBuf,
    pub trust: PathBuf,
    /// `--labels` (empty: none).
    pub labels: String,
    /// `--listen`: port 0 on loopback unless told otherwise.
    pub listen: String,
    pub peers: Vec<String>,
    /// `--metrics 127.0.0.1:PORT`, if any.
    pub metrics: Option<u16>,
    /// Run inside this network namespace (`ip netns exec NS ...`).
    pub netns: Option<String>,
    pub extra: Vec<String>,
    /// Environment variables set for the agent.
    pub env: Vec<(String, String)>,
    /// What the running (or last) agent reported: its listen address and peer id.
    pub addr: Option<String>,
    pub id: Option<String>,
    child: Option<Child>,
}

impl Agent {
    pub fn new(name: &str, dir: PathBuf, trust: &Path) -> Agent {
        std::fs::create_dir_all(dir.join("root")).expect("mkdir root");
        Agent {
            name: name.to_string(),
            root: dir.join("root"),
            state: dir.join("state"),
            control: dir.join("control.sock"),
            log: dir.join("agent.log"),
            trust: trust.to_path_buf(),
            labels: String::new(),
            listen: "/ip4/127.0.0.1/tcp/0".into(),
            peers: Vec::new(),
            metrics: None,
            netns: None,
            extra: Vec::new(),
            env: Vec::new(),
            addr: None,
            id: None,
            child: None,
            dir,
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "agent".to_string(),
            "--listen".into(),
            self.listen.clone(),
            "--state-dir".into(),
            path_str(&self.state),
            "--root".into(),
            path_str(&self.root),
            "--trust".into(),
            path_str(&self.trust),
            "--control".into(),
            path_str(&self.control),
        ];
        for p in &self.peers {
            a.push("--peer".into());
            a.push(p.clone());
        }
        if !self.labels.is_empty() {
            a.push("--labels".into());
            a.push(self.labels.clone());
        }
        if let Some(port) = self.metrics {
            a.push("--metrics".into());
            a.push(format!("127.0.0.1:{port}"));
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    /// A command that runs the binary with `args` the way this agent runs (in its namespace).
    pub fn command(&self, args: &[String]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        c.args(args)
            .current_dir(&self.dir)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    /// Start the agent (not waiting for it: see [`Agent::wait_ready`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open agent log");
        writeln!(log, "----- start: {}", self.args().join(" ")).expect("write log");
        let mut cmd = self.command(&self.args());
        cmd.stdout(log.try_clone().expect("log fd")).stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().expect("spawn the agent"));
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Did the process exit? (Reaps it, and keeps the status out of the way of later checks.)
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let st = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(st)
    }

    /// Wait until the control socket answers `status`; learn the address and peer id.
    #[track_caller]
    pub fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                panic!(
                    "{} exited at start ({st})\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if let Some(s) = self.try_status() {
                self.addr = s["listen"].as_str().map(str::to_string);
                self.id = s["node"].as_str().map(str::to_string);
                assert!(
                    self.addr.is_some() && self.id.is_some(),
                    "{}: status without listen/node: {s:#}",
                    self.name
                );
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "{} did not answer on its control socket within {:?}\n{}",
                    self.name,
                    timeout,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Give the node this key (`STATE/node.key`, as the agent writes it) instead of a random
    /// one, so that what a node's id decides (its zone, its waves) is the same on every run.
    pub fn set_node_key(&self, key: &ed25519_dalek::SigningKey) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.state).expect("mkdir state");
        let path = self.state.join("node.key");
        std::fs::write(
            &path,
            driftless_core::keys::format_secret(key, "driftless node key (test)"),
        )
        .expect("write node.key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// kill -9, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its multiaddr, with or without `/p2p/ID`.
    pub fn multiaddr(&self, with_id: bool) -> String {
        let addr = self.addr.clone().expect("agent address (wait_ready first)");
        if with_id {
            format!("{addr}/p2p/{}", self.id.as_deref().expect("peer id"))
        } else {
            addr
        }
    }

    /// Run the binary with `args` (in the agent's namespace, if any).
    pub fn run(&self, args: &[String]) -> Out {
        if self.netns.is_none() {
            return run_in(&self.dir, args);
        }
        let out = self
            .command(args)
            .output()
            .expect("run the driftless binary");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `status --control SOCK --json`, or None when the agent does not answer.
    pub fn try_status(&self) -> Option<serde_json::Value> {
        self.try_json("status")
    }

    pub fn try_fleet(&self) -> Option<serde_json::Value> {
        self.try_json("fleet")
    }

    fn try_json(&self, what: &str) -> Option<serde_json::Value> {
        // The control socket is a file: reachable from outside the agent's namespace.
        let out = run_in(
            &self.dir,
            [
                what.to_string(),
                "--control".into(),
                path_str(&self.control),
                "--json".into(),
            ],
        );
        if out.code != 0 {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    #[track_caller]
    pub fn status(&self) -> serde_json::Value {
        self.try_status().unwrap_or_else(|| {
            panic!(
                "{}: `status` did not answer\n{}",
                self.name,
                self.log_tail(40)
            )
        })
    }

    #[track_caller]
    pub fn fleet(&self) -> serde_json::Value {
        self.try_fleet().unwrap_or_else(|| {
            panic!(
                "{}: `fleet` did not answer\n{}",
                self.name,
                self.log_tail(40)
            )
        })
    }

    /// (version, state) of `channel` in this node's status, if it has the channel.
    pub fn channel(&self, channel: &str) -> Option<(u64, String)> {
        let s = self.try_status()?;
        let c = &s["channels"][channel];
        Some((c["version"].as_u64()?, c["state"].as_str()?.to_string()))
    }

    /// Has this node applied `version` of `channel` (by its own status)?
    pub fn has_applied(&self, channel: &str, version: u64) -> bool {
        self.channel(channel) == Some((version, "applied".to_string()))
    }

    /// This node's own row in its own fleet view: its latest *signed* status (what it
    /// persisted and gossips), unlike `status`, which shows the live state.
    pub fn own_row(&self) -> Option<serde_json::Value> {
        let id = self.id.as_deref()?;
        let v = self.try_fleet()?;
        v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == id)
            .cloned()
    }

    /// A path inside the agent's root, named as the definition names it.
    pub fn in_root(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// A managed file's content, if it exists.
    pub fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.in_root(abs)).ok()
    }

    /// `/metrics` over plain HTTP.
    pub fn metrics_text(&self) -> String {
        let port = self.metrics.expect("agent started without --metrics");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("send request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("read metrics");
        assert!(body.starts_with("HTTP/1."), "not HTTP: {body}");
        body
    }

    /// `driftless_refused_messages_total{reason="REASON"}` (0 when absent).
    pub fn refused(&self, reason: &str) -> u64 {
        metric(
            &self.metrics_text(),
            "driftless_refused_messages_total",
            reason,
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- {} log (last {lines} lines)\n{}",
            self.name,
            all[from..].join("\n")
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The value of `NAME{reason="REASON"}` in a Prometheus text page (0 when absent).
pub fn metric(page: &str, name: &str, reason: &str) -> u64 {
    let key = format!("{name}{{reason=\"{reason}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map(|v| v.trim().parse::<f64>().expect("metric value") as u64)
        .unwrap_or(0)
}

/// A release host and its agents, in one temporary directory. The trust directory names a
/// fleet of its own, so no agent of another test (or another person's agents on this machine)
/// is ever confused with these.
pub struct LocalFleet {
    pub agents: Vec<Agent>,
    pub ws: Workspace,
    pub release: Key,
    pub trust: PathBuf,
    pub fleet_name: String,
}

impl LocalFleet {
    pub fn new(tag: &str) -> LocalFleet {
        let ws = Workspace {
            dir: tempfile::Builder::new()
                .prefix(&format!("driftless-{tag}-"))
                .tempdir()
                .expect("temp dir"),
        };
        let release = ws.keygen("release");
        ws.mkdir("bundles");
        let fleet_name = format!("{tag}-{}", std::process::id());
        let trust = ws.trust_dir(
            "trust",
            &[&release],
            Some(&format!("fleet = \"{fleet_name}\"\n")),
        );
        LocalFleet {
            agents: Vec::new(),
            ws,
            release,
            trust,
            fleet_name,
        }
    }

    /// Add an agent (not started) named `node<i>`; returns its index.
    pub fn add(&mut self) -> usize {
        let i = self.agents.len();
        let name = format!("node{i}");
        let a = Agent::new(&name, self.ws.path(&name), &self.trust);
        self.agents.push(a);
        i
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.ws.path(rel)
    }

    /// Write a definition and sign it for this fleet with the release key.
    pub fn sign(&self, name: &str, definition: &str, version: u64) -> PathBuf {
        let def = self
            .ws
            .write(&format!("defs/{name}-v{version}.toml"), definition);
        self.ws.sign(
            &def,
            &[&self.release],
            version,
            &format!("bundles/{name}-v{version}.bundle"),
            &["--fleet", &self.fleet_name],
        )
    }

    /// `publish BUNDLE --to TO` (a control socket path or a multiaddr), without judging it.
    pub fn publish(&self, bundle: &Path, to: &str) -> Out {
        self.ws.run([
            "publish".to_string(),
            path_str(bundle),
            "--to".into(),
            to.into(),
        ])
    }

    /// `publish BUNDLE --to TO` run in agent `from`'s network namespace (as a release host
    /// on that node's network would), without judging it.
    pub fn publish_from(&self, from: usize, bundle: &Path, to: &str) -> Out {
        self.agents[from].run(&[
            "publish".to_string(),
            path_str(bundle),
            "--to".into(),
            to.into(),
        ])
    }

    /// A trust directory `rel` with key roles for this fleet: `release` keys with their
    /// threshold, one admission key, one root key, and the root's `version`.
    pub fn roles_dir(
        &self,
        rel: &str,
        version: u64,
        release: &[&Key],
        threshold: usize,
        admission: &Key,
        root: &Key,
    ) -> PathBuf {
        let name = |k: &Key| k.public.file_name().unwrap().to_string_lossy().into_owned();
        let releases: Vec<String> = release.iter().map(|k| format!("\"{}\"", name(k))).collect();
        let mut keys: Vec<&Key> = release.to_vec();
        keys.extend([admission, root]);
        self.ws.trust_dir(
            rel,
            &keys,
            Some(&format!(
                "fleet = \"{}\"\nversion = {version}\n[release]\nkeys = [{}]\nthreshold = {threshold}\n[admission]\nkeys = [\"{}\"]\nthreshold = 1\n[root]\nkeys = [\"{}\"]\nthreshold = 1\n",
                self.fleet_name,
                releases.join(", "),
                name(admission),
                name(root)
            )),
        )
    }

    /// `driftless admit NODE --key KEY --labels LABELS --fleet F --out OUT`, without judging it
    /// (NODE: a peer id or a `node.pub` path).
    pub fn admit(&self, node: &str, key: &Key, labels: &str, out: &Path) -> Out {
        self.ws.run([
            "admit".to_string(),
            node.to_string(),
            "--key".into(),
            path_str(&key.private),
            "--labels".into(),
            labels.into(),
            "--fleet".into(),
            self.fleet_name.clone(),
            "--out".into(),
            path_str(out),
        ])
    }

    /// `driftless root NEXT --key K... --trust TRUST --out OUT` (the current trust directory),
    /// without judging it.
    pub fn sign_root(&self, next: &Path, keys: &[&Key], out: &Path) -> Out {
        let mut args = vec!["root".to_string(), path_str(next)];
        for k in keys {
            args.push("--key".into());
            args.push(path_str(&k.private));
        }
        args.extend([
            "--trust".into(),
            path_str(&self.trust),
            "--out".into(),
            path_str(out),
        ]);
        self.ws.run(args)
    }

    /// The tail of every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        self.agents
            .iter()
            .map(|a| a.log_tail(25))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Poll `f` until it gives `Some`, or panic after `timeout` with every agent's log.
    #[track_caller]
    pub fn wait<T>(&self, what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
        wait_for(what, timeout, f, || self.logs())
    }

    /// Wait until every agent in `which` has applied `version` of `channel`, first by the
    /// file each one writes (cheap to poll), then by its own status. Returns how long the
    /// files took.
    #[track_caller]
    pub fn wait_applied(
        &self,
        which: &[usize],
        channel: &str,
        version: u64,
        file: (&str, &str),
        timeout: Duration,
    ) -> Duration {
        let start = Instant::now();
        self.wait(&format!("{file:?} on nodes {which:?}"), timeout, || {
            which
                .iter()
                .all(|&i| self.agents[i].read(file.0).as_deref() == Some(file.1))
                .then_some(())
        });
        let files_done = start.elapsed();
        self.wait(
            &format!("{channel} v{version} applied on nodes {which:?} (by their status)"),
            timeout,
            || {
                which
                    .iter()
                    .all(|&i| self.agents[i].has_applied(channel, version))
                    .then_some(())
            },
        );
        files_done
    }

    /// Wait until every agent in `which` has signed (and so persisted and gossiped) a status
    /// saying it applied `version` of `channel`. A status is signed at most once per round,
    /// so this can trail [`LocalFleet::wait_applied`] by a round.
    #[track_caller]
    pub fn wait_signed(&self, which: &[usize], channel: &str, version: u64, timeout: Duration) {
        self.wait(
            &format!("signed statuses of nodes {which:?} to say {channel} v{version} applied"),
            timeout,
            || {
                which
                    .iter()
                    .all(|&i| {
                        self.agents[i].own_row().is_some_and(|r| {
                            r["channels"][channel]["version"] == version
                                && r["channels"][channel]["state"] == "applied"
                        })
                    })
                    .then_some(())
            },
        );
    }
}

/// Write `text` to a file (creating parents): for seeding roots.
pub fn seed(path: &Path, text: &str) {
    write_file(path, text)
}

/// Network namespaces for a partition test: a namespace per node and one for the switches.
/// Nodes are grouped in *segments*, each on a bridge of its own (`br<k>`) in the switch
/// namespace; every other segment's bridge is joined to segment 0's by a veth pair (`t<k>a`
/// on `br0`, `t<k>b` on `br<k>`), so that cutting that one link partitions the segment from
/// the rest while its nodes still talk to each other. Node `i` has `eth0` (address
/// `10.231.0.<10+i>/24`) paired with `v<i>` on its segment's bridge. The range is used only
/// inside these namespaces: nothing routes anywhere else. Removed on drop (stop the agents in
/// them first).
pub struct Netns {
    pub switch: String,
    pub nodes: Vec<String>,
}

/// Run `ip ARGS`, returning its stderr on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[track_caller]
fn must_ip(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"))
}

impl Netns {
    /// Why network namespaces cannot be made here (not root, no `ip`, a sandbox), if so.
    pub fn unavailable() -> Option<String> {
        let probe = format!("dlprobe{}", std::process::id());
        match ip(&["netns", "add", &probe]) {
            Ok(()) => {
                let _ = ip(&["netns", "del", &probe]);
                None
            }
            Err(e) => Some(e),
        }
    }

    /// Node `i`'s address.
    pub fn addr(i: usize) -> String {
        format!("10.231.0.{}", 10 + i)
    }

    /// Namespaces named after this process (`dl<pid>-sw`, `dl<pid>-n<i>`) for segments of
    /// the given sizes (nodes numbered in order), all links up.
    pub fn new(segments: &[usize]) -> Netns {
        let tag = format!("dl{}", std::process::id());
        let mut net = Netns {
            switch: format!("{tag}-sw"),
            nodes: Vec::new(),
        };
        let sw = net.switch.clone();
        // Left over by an earlier run with the same pid: start clean.
        let _ = ip(&["netns", "del", &sw]);
        must_ip(&["netns", "add", &sw]);
        for (k, &size) in segments.iter().enumerate() {
            let br = format!("br{k}");
            must_ip(&["-n", &sw, "link", "add", &br, "type", "bridge"]);
            must_ip(&["-n", &sw, "link", "set", &br, "up"]);
            if k > 0 {
                let (ta, tb) = (format!("t{k}a"), format!("t{k}b"));
                must_ip(&[
                    "-n", &sw, "link", "add", &ta, "type", "veth", "peer", "name", &tb,
                ]);
                must_ip(&["-n", &sw, "link", "set", &ta, "master", "br0"]);
                must_ip(&["-n", &sw, "link", "set", &tb, "master", &br]);
                must_ip(&["-n", &sw, "link", "set", &ta, "up"]);
                must_ip(&["-n", &sw, "link", "set", &tb, "up"]);
            }
            for _ in 0..size {
                let i = net.nodes.len();
                let ns = format!("{tag}-n{i}");
                let _ = ip(&["netns", "del", &ns]);
                must_ip(&["netns", "add", &ns]);
                net.nodes.push(ns.clone());
                let veth = format!("v{i}");
                must_ip(&[
                    "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &veth,
                    "netns", &sw,
                ]);
                must_ip(&["-n", &sw, "link", "set", &veth, "master", &br]);
                must_ip(&["-n", &sw, "link", "set", &veth, "up"]);
                let cidr = format!("{}/24", Netns::addr(i));
                must_ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
                must_ip(&["-n", &ns, "link", "set", "eth0", "up"]);
                must_ip(&["-n", &ns, "link", "set", "lo", "up"]);
            }
        }
        net
    }

    /// Cut (`false`) or restore (`true`) the link between segment `k` (> 0) and segment 0.
    pub fn segment_link(&self, k: usize, up: bool) {
        let ta = format!("t{k}a");
        let state = if up { "up" } else { "down" };
        must_ip(&["-n", &self.switch, "link", "set", &ta, state]);
    }

    /// Cut (`false`) or restore (`true`) node `i`'s own link on its bridge.
    pub fn node_link(&self, i: usize, up: bool) {
        let veth = format!("v{i}");
        let state = if up { "up" } else { "down" };
        must_ip(&["-n", &self.switch, "link", "set", &veth, state]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.switch]) {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleaning up: {e}");
            }
        }
    }
}
