//! Telling the service manager how skiff is doing (systemd's `sd_notify` protocol,
//! `Type=notify` units), and the stop signals it sends.
//!
//! When `NOTIFY_SOCKET` is set, each state change is one datagram (`READY=1`,
//! `STOPPING=1`) sent to that unix socket; a leading `@` names a socket in the
//! abstract namespace. No libsystemd: the protocol is this one datagram. The variable
//! is taken out of the environment when read ([`Notifier::from_env`], at start, before
//! any thread), so nothing skiff starts (shims, CNI plugins, containers) inherits it.
//!
//! Owns: [`Notifier`], [`stop_requested`]. Calls: nothing in skiff (std and tokio).

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

pub const ENV: &str = "NOTIFY_SOCKET";

/// Where the service manager listens for state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notifier {
    /// A socket file.
    Path(PathBuf),
    /// A socket in the abstract namespace (`@name`), stored without the `@`.
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Takes `NOTIFY_SOCKET` out of the environment and returns where it points.
    /// Call it first thing in `main`, while the process has one thread (changing the
    /// environment is not thread-safe).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os(ENV)?;
        std::env::remove_var(ENV);
        Self::parse(value)
    }

    /// `NOTIFY_SOCKET`'s value: `@name` (abstract) or a path; empty is none.
    pub fn parse(value: OsString) -> Option<Notifier> {
        use std::os::unix::ffi::OsStringExt;
        let bytes = value.into_vec();
        match bytes.split_first() {
            None => None,
            Some((b'@', name)) => Some(Notifier::Abstract(name.to_vec())),
            Some(_) => Some(Notifier::Path(PathBuf::from(OsString::from_vec(bytes)))),
        }
    }

    /// `READY=1`: startup is finished.
    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    fn send_logged(&self, state: &str) {
        match self.send(state) {
            Ok(()) => tracing::info!(state, "told the service manager"),
            Err(e) => {
                tracing::warn!(state, socket = ?self, error = %e, "telling the service manager failed")
            }
        }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines) as one datagram.
    pub fn send(&self, state: &str) -> std::io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        match self {
            Notifier::Path(path) => socket.send_to(state.as_bytes(), path)?,
            Notifier::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &address)?
            }
        };
        Ok(())
    }
}

/// Waits for SIGTERM (what systemd and `kill` send) or SIGINT (Ctrl-C).
pub async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn states_arrive_as_datagrams_on_a_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::parse(path.clone().into_os_string()).unwrap();
        assert_eq!(notifier, Notifier::Path(path));
        notifier.ready();
        assert_eq!(receive(&listener), "READY=1");
        notifier.stopping();
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn a_leading_at_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("skiff-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::parse(format!("@{name}").into()).unwrap();
        assert_eq!(notifier, Notifier::Abstract(name.into_bytes()));
        notifier.send("READY=1").unwrap();
        assert_eq!(receive(&listener), "READY=1");
    }

    #[test]
    fn empty_means_none_and_a_missing_socket_is_an_error_not_a_panic() {
        assert_eq!(Notifier::parse(OsString::new()), None);
        let dir = tempfile::tempdir().unwrap();
        let gone = Notifier::Path(dir.path().join("nobody-listens"));
        assert!(gone.send("READY=1").is_err());
        gone.ready();
    }

    #[test]
    fn reading_the_variable_removes_it_from_the_environment() {
        // The only test touching NOTIFY_SOCKET: no other test reads it concurrently.
        std::env::set_var(ENV, "/run/systemd/notify");
        assert_eq!(
            Notifier::from_env(),
            Some(Notifier::Path("/run/systemd/notify".into()))
        );
        assert!(std::env::var_os(ENV).is_none());
        assert_eq!(Notifier::from_env(), None);
    }
}
