//! The agent's settings: a TOML file (`--config`, see `dist/agent.toml`) with the same keys as
//! the flags; flags win. Every default is named here with its reason.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Listen on every address, port 7400, unless told otherwise.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/7400";
pub const DEFAULT_TRUST: &str = "/etc/driftless/trust";
pub const DEFAULT_CONTROL: &str = "/run/driftless/control.sock";
/// Re-apply every channel this often (±10% jitter) even with no event: the backstop for
/// drift no watch saw (a package removed, a user changed by hand).
pub const DEFAULT_REAPPLY: Duration = Duration::from_secs(600);
/// When inotify is refused (no instances or watches left), managed paths are re-checked this
/// often instead.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The file, every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub listen: Option<String>,
    #[serde(default)]
    pub peers: Vec<String>,
    pub state_dir: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub trust: Option<PathBuf>,
    /// `{ role = "web" }` or `"role=web,dc=a"`.
    pub labels: Option<toml::Value>,
    pub control: Option<PathBuf>,
    pub metrics: Option<String>,
    /// e.g. "10m"
    pub reapply_interval: Option<String>,
    /// One gossip round, e.g. "1s".
    pub round_interval: Option<String>,
    /// "human" (default) or "json".
    pub log_format: Option<String>,
    /// This node's certificate (default: `node.cert` in the state directory).
    pub cert: Option<PathBuf>,
    /// Zones of the fleet view: 2^zone_bits zones by hash of the node id (see `--zone-bits`).
    pub zone_bits: Option<u8>,
    /// Groups of zones: 2^group_bits groups (see `--group-bits`).
    pub group_bits: Option<u8>,
}

/// Zones of the fleet view, at most 2^16 (a fleet of millions in zones of ~200 nodes would
/// need 14 bits).
pub const MAX_ZONE_BITS: u8 = 16;

/// Settings after merging file and flags.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub listen: libp2p::Multiaddr,
    pub peers: Vec<libp2p::Multiaddr>,
    pub state_dir: PathBuf,
    pub root: PathBuf,
    pub trust: PathBuf,
    pub labels: driftless_core::Labels,
    pub control: PathBuf,
    pub metrics: Option<std::net::SocketAddr>,
    pub reapply: Duration,
    pub round: Duration,
    pub log_json: bool,
    /// Where the node certificate is (None: `node.cert` in the state directory).
    pub cert: Option<PathBuf>,
    /// The fleet view's zones: 2^zone_bits (0: one zone, every node sees every node).
    pub zone_bits: u8,
    /// Groups of zones, the fleet view's second level: 2^group_bits groups of
    /// 2^(zone_bits - group_bits) zones (0: no groups). Less than `zone_bits` when not 0.
    pub group_bits: u8,
}

pub fn read_file(path: &Path) -> anyhow::Result<AgentFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config {}: cannot read", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim()))
}

pub fn parse_duration(place: &str, s: &str) -> anyhow::Result<Duration> {
    let d = humantime::parse_duration(s).map_err(|e| anyhow::anyhow!("{place}: `{s}`: {e}"))?;
    if d.is_zero() {
        bail!("{place}: must be more than zero");
    }
    Ok(d)
}

pub fn parse_multiaddr(place: &str, s: &str) -> anyhow::Result<libp2p::Multiaddr> {
    s.parse().map_err(|e| {
        anyhow::anyhow!("{place}: `{s}` is not a multiaddr like /ip4/127.0.0.1/tcp/7400: {e}")
    })
}

pub fn labels_from(place: &str, v: &toml::Value) -> anyhow::Result<driftless_core::Labels> {
    match v {
        toml::Value::String(s) => {
            driftless_core::labels::parse_labels(s).map_err(|e| anyhow::anyhow!("{place}: {e}"))
        }
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k.clone(), s.clone())),
                _ => bail!("{place}: label `{k}`: expected a string"),
            })
            .collect(),
        _ => bail!("{place}: expected a table of strings or \"k=v,...\""),
    }
}
