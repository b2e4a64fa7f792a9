//! Health checks declared by definitions (command, TCP connect, HTTP GET, file exists), each
//! run on its interval off the main loop; results feed the node's signed status.

use driftless_core::definition::{HealthCheck, Probe};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct CheckResult {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

struct Entry {
    channel: String,
    check: HealthCheck,
    due: Instant,
    running: bool,
}

pub struct Health {
    root: PathBuf,
    entries: Vec<Entry>,
    /// name → (ok, detail)
    pub results: BTreeMap<String, (bool, String)>,
    tx: mpsc::UnboundedSender<CheckResult>,
}

impl Health {
    pub fn new(root: PathBuf, tx: mpsc::UnboundedSender<CheckResult>) -> Health {
        Health {
            root,
            entries: Vec::new(),
            results: BTreeMap::new(),
            tx,
        }
    }

    /// The checks of `channel` (replacing its previous ones); they run at once, then on
    /// their interval.
    pub fn set_channel(&mut self, channel: &str, checks: &[HealthCheck]) {
        let now = Instant::now();
        let mut keep: Vec<Entry> = Vec::new();
        for e in self.entries.drain(..) {
            if e.channel != channel {
                keep.push(e);
            } else if !checks.iter().any(|c| c.name == e.check.name) {
                self.results.remove(&e.check.name);
            }
        }
        for c in checks {
            keep.push(Entry {
                channel: channel.to_string(),
                check: c.clone(),
                due: now,
                running: false,
            });
        }
        self.entries = keep;
    }

    pub fn healthy(&self) -> (bool, Vec<String>) {
        let failing: Vec<String> = self
            .results
            .iter()
            .filter(|(_, (ok, _))| !ok)
            .map(|(n, _)| n.clone())
            .collect();
        (failing.is_empty(), failing)
    }

    /// When the next check is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| !e.running)
            .map(|e| e.due)
            .min()
    }

    /// Start every check that is due.
    pub fn run_due(&mut self) {
        let now = Instant::now();
        for e in self
            .entries
            .iter_mut()
            .filter(|e| !e.running && e.due <= now)
        {
            e.running = true;
            let check = e.check.clone();
            let tx = self.tx.clone();
            let root = self.root.clone();
            tokio::spawn(async move {
                let timeout = Duration::from_secs(check.timeout_secs.max(1));
                let (ok, detail) =
                    match tokio::time::timeout(timeout, probe(&check.probe, root)).await {
                        Ok(r) => r,
                        Err(_) => (false, format!("timed out after {} s", timeout.as_secs())),
                    };
                let _ = tx.send(CheckResult {
                    name: check.name,
                    ok,
                    detail,
                });
            });
        }
    }

    /// A check finished: record it and schedule its next run. True when the result changed.
    pub fn record(&mut self, r: CheckResult) -> bool {
        let now = Instant::now();
        for e in self.entries.iter_mut().filter(|e| e.check.name == r.name) {
            e.running = false;
            e.due = now + Duration::from_secs(e.check.interval_secs.max(1));
        }
        let before = self.results.get(&r.name).map(|(ok, _)| *ok);
        self.results.insert(r.name, (r.ok, r.detail));
        before != Some(r.ok)
    }
}

async fn probe(p: &Probe, root: PathBuf) -> (bool, String) {
    match p {
        Probe::Command(cmd) => {
            let out = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(&root)
                .env("DRIFTLESS_ROOT", &root)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => (true, "exit status 0".into()),
                Ok(o) => (
                    false,
                    format!(
                        "{}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                ),
                Err(e) => (false, format!("cannot run: {e}")),
            }
        }
        Probe::Tcp(addr) => match tokio::net::TcpStream::connect(addr.as_str()).await {
            Ok(_) => (true, "connected".into()),
            Err(e) => (false, e.to_string()),
        },
        Probe::Http(url) => http_get(url).await,
        Probe::FileExists(path) => {
            let real = crate::fsutil::RootMap::new(&root).resolve(path);
            match real {
                Ok(r) if r.exists() => (true, "exists".into()),
                Ok(_) => (false, format!("{path} does not exist")),
                Err(e) => (false, e.to_string()),
            }
        }
    }
}

/// A plain HTTP/1.0 GET (http:// only): healthy on a 2xx status line.
async fn http_get(url: &str) -> (bool, String) {
    let Some(rest) = url.strip_prefix("http://") else {
        return (false, "only http:// URLs are supported".into());
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = match tokio::net::TcpStream::connect(&hostport).await {
        Ok(s) => s,
        Err(e) => return (false, e.to_string()),
    };
    let host = hostport
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&hostport);
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: driftless\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return (false, e.to_string());
    }
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    let line = head.lines().next().unwrap_or("").to_string();
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..300).contains(&c) => (true, line),
        Some(_) => (false, line),
        None => (false, "no HTTP status line".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering every request with `status`.
    async fn http_server(status: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        format!("http://{addr}/health")
    }

    #[tokio::test]
    async fn tcp_http_and_file_probes_pass_and_fail_on_real_sockets_and_files() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().to_path_buf();

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().to_string();
        let closed = {
            let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            t.local_addr().unwrap().to_string()
        }; // dropped: nothing listens there now
        assert!(probe(&Probe::Tcp(open), root_path.clone()).await.0);
        assert!(!probe(&Probe::Tcp(closed), root_path.clone()).await.0);

        let ok = http_server("200 OK").await;
        let bad = http_server("503 Service Unavailable").await;
        let (pass, line) = probe(&Probe::Http(ok), root_path.clone()).await;
        assert!(pass, "{line}");
        let (pass, line) = probe(&Probe::Http(bad), root_path.clone()).await;
        assert!(!pass && line.contains("503"), "{line}");
        let (pass, why) = probe(&Probe::Http("https://x/".into()), root_path.clone()).await;
        assert!(!pass && why.contains("http://"), "{why}");

        // A path is looked up under the root, not on the host.
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        std::fs::write(root.path().join("run/app.pid"), "1").unwrap();
        assert!(
            probe(&Probe::FileExists("/run/app.pid".into()), root_path.clone())
                .await
                .0
        );
        let (pass, why) = probe(&Probe::FileExists("/run/gone.pid".into()), root_path).await;
        assert!(!pass && why.contains("does not exist"), "{why}");
    }
}
