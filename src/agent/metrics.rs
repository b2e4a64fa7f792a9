//! Prometheus metrics (`driftless_*`, through prometheus-client), served over plain HTTP on
//! `--metrics HOST:PORT` by a small thread.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViewLabel {
    pub view: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub applies: Family<ResultLabel, Counter>,
    pub refused: Family<ReasonLabel, Counter>,
    pub peers: Family<ViewLabel, Gauge>,
    pub drift_detected: Counter,
    pub drift_corrected: Counter,
    pub bytes_sent: Counter,
    pub bytes_received: Counter,
    pub version: Family<ChannelLabel, Gauge>,
    pub registry: Arc<Registry>,
}

impl Metrics {
    /// One more refusal for `reason` (`driftless_refused_messages_total{reason=...}`).
    pub fn count_refused(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("driftless");
        let m = Metrics {
            applies: Family::default(),
            refused: Family::default(),
            peers: Family::default(),
            drift_detected: Counter::default(),
            drift_corrected: Counter::default(),
            bytes_sent: Counter::default(),
            bytes_received: Counter::default(),
            version: Family::default(),
            registry: Arc::new(Registry::default()),
        };
        r.register(
            "applies",
            "Convergence runs by result (ok, failed)",
            m.applies.clone(),
        );
        r.register(
            "refused_messages",
            "Refused bundles and messages by reason",
            m.refused.clone(),
        );
        r.register(
            "peers",
            "Peers in the active and passive views",
            m.peers.clone(),
        );
        r.register(
            "drift_detected",
            "Drifted resources found",
            m.drift_detected.clone(),
        );
        r.register(
            "drift_corrected",
            "Drifted resources set right",
            m.drift_corrected.clone(),
        );
        r.register("sent_bytes", "Bytes sent to peers", m.bytes_sent.clone());
        r.register(
            "received_bytes",
            "Bytes received from peers",
            m.bytes_received.clone(),
        );
        r.register(
            "applied_version",
            "Version applied per channel",
            m.version.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// Serve `/metrics` on `addr` from a thread of its own.
    pub fn serve(&self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let server =
            tiny_http::Server::http(addr).map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?;
        let registry = self.registry.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for req in server.incoming_requests() {
                    let mut body = String::new();
                    let (code, ctype) = if req.url() == "/metrics" {
                        let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
                        (
                            200,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                    } else {
                        body.push_str("see /metrics\n");
                        (404, "text/plain")
                    };
                    let header = tiny_http::Header::from_bytes("Content-Type", ctype)
                        .expect("static header");
                    let _ = req.respond(
                        tiny_http::Response::from_string(body)
                            .with_status_code(code)
                            .with_header(header),
                    );
                }
            })?;
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
