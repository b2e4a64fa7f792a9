//! `driftless agent`: the daemon. Flags override the config file.

use super::{CliError, CliResult};
use crate::agent::config::{self, AgentConfig};
use std::path::PathBuf;

/// Run the agent: gossip bundles with peers, verify, converge, undo drift, show the fleet.
///
/// Every flag can also be set in the TOML config file (same names, `peers` a list); flags win.
/// Logs go to stderr (human by default, JSON with --log-format json); RUST_LOG filters them.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// TOML config file (see dist/agent.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: /ip4/0.0.0.0/tcp/7400]
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Option<String>,
    /// Bootstrap peer (multiaddr; the /p2p/ID part may be left out); repeatable
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<String>,
    /// State directory [default: /var/lib/driftless, or ROOT/var/lib/driftless with --root]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Map every absolute path of definitions under DIR [default: /]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Trust directory (*.pub release keys, trust.toml) [default: /etc/driftless/trust]
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// This node's labels, k=v,...
    #[arg(long, value_name = "K=V,...")]
    pub labels: Option<String>,
    /// Control socket for status/fleet/publish [default: /run/driftless/control.sock]
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
    /// Serve Prometheus metrics on this HOST:PORT (plain HTTP)
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Re-apply every channel this often, with jitter [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub reapply_interval: Option<String>,
    /// One gossip round [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub round_interval: Option<String>,
    /// Log format: human or json [default: human]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// This node's certificate from `driftless admit` [default: STATE_DIR/node.cert]; picked
    /// up without a restart when it appears or changes
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Split the fleet view into 2^N zones by a hash of the node id: each node holds its own
    /// zone's statuses in full and one summary row per other zone (`fleet --node` fetches a
    /// node of another zone on demand). 0 (one zone, everyone sees everyone) suits fleets up
    /// to a few hundred nodes; for larger ones about log2(nodes / 200). Every node of a fleet
    /// must use the same value [default: 0]
    #[arg(long, value_name = "N")]
    pub zone_bits: Option<u8>,
    /// Group the 2^zone-bits zones into 2^N groups (zones whose numbers share their top N
    /// bits): each node then holds the summary rows of its own group's zones and one row per
    /// group, not one row per zone. For fleets of 20,000 nodes and more, with zones of about
    /// 100 nodes (zone-bits about log2(nodes / 100)): about half of zone-bits, e.g. 100,000
    /// nodes: --zone-bits 10 --group-bits 5. Must be less than zone-bits. Every node of a
    /// fleet must use the same value [default: 0, no groups]
    #[arg(long, value_name = "N")]
    pub group_bits: Option<u8>,
}

fn resolve(a: Args) -> anyhow::Result<AgentConfig> {
    let file = match &a.config {
        Some(p) => config::read_file(p)?,
        None => config::AgentFile::default(),
    };
    let place = |key: &str| match &a.config {
        Some(p) => format!("{}: field `{key}`", p.display()),
        None => format!("--{key}"),
    };
    let listen_s = a
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let listen_place = if a.listen.is_some() {
        "--listen".to_string()
    } else {
        place("listen")
    };
    let listen = config::parse_multiaddr(&listen_place, &listen_s)?;
    let peer_strs = if a.peers.is_empty() {
        file.peers.clone()
    } else {
        a.peers.clone()
    };
    let peers = peer_strs
        .iter()
        .map(|p| {
            config::parse_multiaddr(
                if a.peers.is_empty() {
                    "peers"
                } else {
                    "--peer"
                },
                p,
            )
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let root_arg = a.root.clone().or(file.root.clone());
    let root = super::root_dir(root_arg.as_ref()).map_err(|e| e.error)?;
    let state_dir = crate::state::default_dir(
        a.state_dir.as_deref().or(file.state_dir.as_deref()),
        root_arg.as_ref().map(|_| root.as_path()),
    );
    let labels = match (&a.labels, &file.labels) {
        (Some(l), _) => {
            driftless_core::labels::parse_labels(l).map_err(|e| anyhow::anyhow!("--labels: {e}"))?
        }
        (None, Some(v)) => config::labels_from(&place("labels"), v)?,
        (None, None) => Default::default(),
    };
    let metrics = match a.metrics.clone().or(file.metrics.clone()) {
        None => None,
        Some(m) => Some(m.parse().map_err(|e| {
            anyhow::anyhow!("--metrics `{m}`: expected HOST:PORT such as 127.0.0.1:9464 ({e})")
        })?),
    };
    let reapply = match a.reapply_interval.clone().or(file.reapply_interval.clone()) {
        None => config::DEFAULT_REAPPLY,
        Some(s) => config::parse_duration("reapply_interval", &s)?,
    };
    let round = match a.round_interval.clone().or(file.round_interval.clone()) {
        None => std::time::Duration::from_secs(1),
        Some(s) => config::parse_duration("round_interval", &s)?,
    };
    let log_json = match a.log_format.clone().or(file.log_format.clone()).as_deref() {
        None | Some("human") => false,
        Some("json") => true,
        Some(other) => anyhow::bail!("log_format `{other}`: expected human or json"),
    };
    let zone_bits = a.zone_bits.or(file.zone_bits).unwrap_or(0);
    if zone_bits > config::MAX_ZONE_BITS {
        let at = if a.zone_bits.is_some() {
            "--zone-bits".to_string()
        } else {
            place("zone_bits")
        };
        anyhow::bail!(
            "{at}: {zone_bits} is too many zone bits (at most {}, for 65,536 zones)",
            config::MAX_ZONE_BITS
        );
    }
    let group_bits = a.group_bits.or(file.group_bits).unwrap_or(0);
    if group_bits > 0 && group_bits >= zone_bits {
        let at = if a.group_bits.is_some() {
            "--group-bits".to_string()
        } else {
            place("group_bits")
        };
        let zone_at = if a.zone_bits.is_some() {
            "--zone-bits".to_string()
        } else if file.zone_bits.is_some() {
            place("zone_bits")
        } else {
            "the default".to_string()
        };
        if zone_bits == 0 {
            anyhow::bail!(
                "{at}: {group_bits} group bits, but zone_bits is 0 ({zone_at}: one zone, nothing \
                 to group): groups are groups of zones, so set zone_bits too (group_bits about \
                 half of it), or leave group_bits at 0"
            );
        }
        anyhow::bail!(
            "{at}: {group_bits} group bits would leave fewer than two zones in each group of the \
             {} zones (zone_bits {zone_bits}, from {zone_at}): group_bits must be less than \
             zone_bits (about half of it), or 0 for no groups",
            1u32 << zone_bits
        );
    }
    Ok(AgentConfig {
        listen,
        peers,
        state_dir,
        root,
        trust: a
            .trust
            .or(file.trust)
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_TRUST)),
        labels,
        control: a
            .control
            .or(file.control)
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONTROL)),
        metrics,
        reapply,
        round,
        log_json,
        cert: a.cert.or(file.cert),
        zone_bits,
        group_bits,
    })
}

pub fn run(a: Args) -> CliResult {
    let cfg = resolve(a).map_err(CliError::bad)?;
    // Before any thread starts: it takes systemd's variables out of the environment.
    let notifier = crate::agent::sdnotify::Notifier::from_env();
    init_logs(cfg.log_json);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
        .map_err(CliError::failed)?;
    rt.block_on(crate::agent::run::run(cfg, notifier))
        .map_err(|e| {
            if e.is::<crate::state::Busy>() {
                CliError::bad(e)
            } else {
                CliError::failed(e)
            }
        })?;
    Ok(0)
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.with_ansi(false).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `resolve` of `driftless agent ARGS`, with `toml` as the config file when given.
    fn resolved(args: &[&str], toml: Option<&str>) -> anyhow::Result<AgentConfig> {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["driftless".to_string(), "agent".into()];
        if let Some(text) = toml {
            let path = dir.path().join("agent.toml");
            std::fs::write(&path, text).unwrap();
            argv.extend(["--config".into(), path.display().to_string()]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        match crate::cli::Cli::try_parse_from(argv)
            .expect("parses")
            .command
        {
            crate::cli::Command::Agent(a) => resolve(a),
            other => panic!("not the agent: {other:?}"),
        }
    }

    fn bits(args: &[&str], toml: Option<&str>) -> (u8, u8) {
        let c = resolved(args, toml).unwrap_or_else(|e| panic!("{args:?} {toml:?}: {e:#}"));
        (c.zone_bits, c.group_bits)
    }

    fn error(args: &[&str], toml: Option<&str>) -> String {
        match resolved(args, toml) {
            Ok(c) => panic!(
                "{args:?} {toml:?} accepted: zone_bits {}, group_bits {}",
                c.zone_bits, c.group_bits
            ),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn group_bits_come_from_the_flag_over_the_file_over_no_groups() {
        assert_eq!(bits(&[], None), (0, 0));
        assert_eq!(bits(&["--zone-bits", "4"], None), (4, 0));
        assert_eq!(
            bits(&["--zone-bits", "4", "--group-bits", "2"], None),
            (4, 2)
        );
        let file = "zone_bits = 10\ngroup_bits = 5\n";
        assert_eq!(bits(&[], Some(file)), (10, 5));
        assert_eq!(bits(&["--group-bits", "3"], Some(file)), (10, 3));
        assert_eq!(bits(&["--group-bits", "0"], Some(file)), (10, 0));
        // The flag wins over a bad value in the file, which is then never used.
        let bad = "zone_bits = 2\ngroup_bits = 7\n";
        assert_eq!(bits(&["--group-bits", "1"], Some(bad)), (2, 1));
        // The largest grouping: two zones per group.
        assert_eq!(
            bits(&["--zone-bits", "16", "--group-bits", "15"], None),
            (16, 15)
        );
    }

    #[test]
    fn group_bits_that_leave_nothing_to_group_are_refused_naming_where_and_why() {
        let e = error(&["--zone-bits", "2", "--group-bits", "2"], None);
        assert!(e.starts_with("--group-bits: 2 group bits"), "{e}");
        assert!(
            e.contains("the 4 zones (zone_bits 2, from --zone-bits)"),
            "{e}"
        );
        assert!(e.contains("must be less than zone_bits"), "{e}");
        let e = error(&["--zone-bits", "2", "--group-bits", "5"], None);
        assert!(e.contains("must be less than zone_bits"), "{e}");
        // No zones at all, by default or by hand.
        let e = error(&["--group-bits", "1"], None);
        assert!(e.starts_with("--group-bits: 1 group bits"), "{e}");
        assert!(e.contains("zone_bits is 0 (the default"), "{e}");
        assert!(e.contains("set zone_bits too"), "{e}");
        let e = error(&["--zone-bits", "0", "--group-bits", "1"], None);
        assert!(e.contains("zone_bits is 0 (--zone-bits"), "{e}");
        // From the file: the file and its key are named, and where zone_bits came from.
        let e = error(&[], Some("zone_bits = 3\ngroup_bits = 3\n"));
        assert!(
            e.contains("agent.toml: field `group_bits`: 3 group bits"),
            "{e}"
        );
        assert!(e.contains("from /"), "{e}");
        assert!(e.contains("agent.toml: field `zone_bits`"), "{e}");
        let e = error(&["--zone-bits", "1"], Some("group_bits = 1\n"));
        assert!(e.contains("field `group_bits`: 1 group bits"), "{e}");
        assert!(e.contains("(zone_bits 1, from --zone-bits)"), "{e}");
        let e = error(&[], Some("group_bits = 2\n"));
        assert!(e.contains("zone_bits is 0 (the default"), "{e}");
    }
}
