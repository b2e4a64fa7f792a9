//! systemd's service notification protocol (sd_notify(3)), without a library: one datagram
//! per message to the socket named by `$NOTIFY_SOCKET`.
//!
//! Under `Type=notify` the agent says `READY=1` once it listens and its control socket
//! answers (so `systemctl start driftless` returns when the agent can be asked for its
//! status), `WATCHDOG=1` from its main loop at half of `WatchdogSec=` (a loop that hangs is
//! killed and restarted by systemd), a one-line `STATUS=` for `systemctl status`, and
//! `STOPPING=1` on the way out. Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    sock: Option<(UnixDatagram, SocketAddr)>,
    /// How often to send `WATCHDOG=1` (half of `WatchdogSec=`), when systemd asks for it.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// Read `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` and remove them (and `$WATCHDOG_PID`) from
    /// the environment, so that the commands the agent runs (exec resources, apt, systemctl)
    /// do not inherit them. Call it before any other thread starts.
    pub fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
        let watchdog = usec
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0)
            .filter(|_| match &pid {
                Some(p) => p.parse::<u32>().ok() == Some(std::process::id()),
                None => true,
            })
            .map(|u| Duration::from_micros(u / 2));
        let sock = path.and_then(|p| {
            let addr = address(&p)?;
            let s = UnixDatagram::unbound().ok()?;
            Some((s, addr))
        });
        if sock.is_none() {
            return Notifier {
                sock: None,
                watchdog: None,
            };
        }
        Notifier { sock, watchdog }
    }

    /// A notifier that never sends (tests, or the agent outside systemd).
    pub fn none() -> Notifier {
        Notifier {
            sock: None,
            watchdog: None,
        }
    }

    pub fn active(&self) -> bool {
        self.sock.is_some()
    }

    /// Send `msg` (e.g. "READY=1\nSTATUS=..."); failures are logged once at debug level, never fatal.
    pub fn notify(&self, msg: &str) {
        if let Some((s, addr)) = &self.sock {
            if let Err(e) = s.send_to_addr(msg.as_bytes(), addr) {
                tracing::debug!("sd_notify: {e}");
            }
        }
    }
}

/// `/run/systemd/notify` or `@abstract-name`.
fn address(p: &std::ffi::OsStr) -> Option<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = p.as_bytes();
    match bytes.first()? {
        b'/' => SocketAddr::from_pathname(std::path::Path::new(p)).ok(),
        b'@' => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            sock: Some((
                UnixDatagram::unbound().unwrap(),
                address(path.as_os_str()).unwrap(),
            )),
            watchdog: None,
        };
        assert!(n.active());
        n.notify("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        assert!(address(std::ffi::OsStr::new("@x")).is_some());
        assert!(address(std::ffi::OsStr::new("relative")).is_none());
        Notifier::none().notify("READY=1"); // does nothing
    }
}
