//! The control socket: a Unix socket (mode 0600) where the CLI asks for `status`, `fleet`, or
//! hands over a bundle (`publish`). One JSON request per line, one JSON answer per line.

use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A request line is at most this long (a bundle travels hex-encoded: 2 × 64 MiB + slack).
const MAX_REQUEST_BYTES: usize = 2 * driftless_core::trust::DEFAULT_MAX_BUNDLE_BYTES + 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
    Fleet,
    /// One node's full signed status (`fleet --node`): from the local fleet view when this
    /// node holds it (its own zone), else fetched from that node's zone on demand.
    Node {
        node: String,
    },
    /// A bundle, hex-encoded.
    Publish {
        bundle: String,
    },
}

pub type Pending = (ControlRequest, oneshot::Sender<serde_json::Value>);

/// Bind the socket (replacing one left by a killed agent: the state lock is already held),
/// mode 0600, and forward requests to the main loop.
pub fn listen(path: &Path, tx: mpsc::UnboundedSender<Pending>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "--control {}: cannot replace: {e}",
                path.display()
            ))
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("--control {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = serve(stream, tx).await;
            });
        }
    });
    Ok(())
}

async fn serve(stream: UnixStream, tx: mpsc::UnboundedSender<Pending>) -> anyhow::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r.take(MAX_REQUEST_BYTES as u64));
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let answer = match serde_json::from_str::<ControlRequest>(&line) {
        Ok(req) => {
            let (otx, orx) = oneshot::channel();
            tx.send((req, otx))
                .map_err(|_| anyhow::anyhow!("agent is stopping"))?;
            orx.await?
        }
        Err(e) => serde_json::json!({"error": format!("bad request: {e}")}),
    };
    let mut out = serde_json::to_vec(&answer)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    Ok(())
}

/// The client side, for the CLI: one request, one answer.
pub fn request(path: &Path, req: &ControlRequest) -> anyhow::Result<serde_json::Value> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "--control {}: cannot connect ({e}); is the agent running?",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(s).read_line(&mut answer)?;
    let v: serde_json::Value = serde_json::from_str(&answer).map_err(|e| {
        anyhow::anyhow!(
            "--control {}: bad answer from the agent: {e}",
            path.display()
        )
    })?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("agent: {err}");
    }
    Ok(v)
}
