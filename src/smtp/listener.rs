//! Accepting SMTP connections: the overall, per-address and per-network connection limits,
//! answered with 421 (RFC 5321 §3.8) rather than left waiting in the backlog, then one task
//! per session. Clients in `trusted_networks` are exempt from all three (they are our own
//! hosts, and must not be the ones locked out), and from the stress limits in the session.

use super::hop::Hop;
use super::session::serve_connection;
use super::stress::Load;
use crate::check::metrics::SmtpRefusal;
use crate::config::ListenerConfig;
use crate::identity::limits::{network_of, Guard};
use crate::runtime::Current;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Open connections per client address, or per client network (the network's address).
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address (or network) until dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A bound SMTP listener and what it is for (both fixed at start).
pub struct SmtpListener {
    pub tcp: TcpListener,
    pub config: ListenerConfig,
}

/// What every listener of the front end shares: the connection limits, the stress gauge and
/// the abuse limits, so that several listeners are one front end.
pub struct Shared {
    slots: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    per_network: Arc<PerAddress>,
    load: Arc<Load>,
    guard: Arc<Guard>,
}

impl Shared {
    /// `guard`: the abuse limits, in this host's memory or shared by a fleet.
    pub fn new(current: &Current, guard: Arc<Guard>) -> Arc<Shared> {
        let first = current.read().unwrap_or_else(|p| p.into_inner());
        let smtp = &first.config.smtp;
        let metrics = Arc::clone(first.journal.metrics());
        Arc::new(Shared {
            slots: Arc::new(Semaphore::new(smtp.max_connections)),
            per_address: Arc::default(),
            per_network: Arc::default(),
            load: Load::new(smtp.max_connections, smtp.stress_threshold_percent, metrics),
            guard,
        })
    }
}

/// Accepts until `stop` turns true; returns the sessions still running (the server drains
/// them within its grace period).
pub async fn accept_loop(
    listener: SmtpListener,
    shared: Arc<Shared>,
    current: Current,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut sessions = JoinSet::new();
    let SmtpListener {
        tcp: listener,
        config: endpoint,
    } = listener;
    let (slots, per_address, per_network, load) = (
        &shared.slots,
        &shared.per_address,
        &shared.per_network,
        &shared.load,
    );
    loop {
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "smtp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let snapshot = Arc::clone(&current.read().unwrap_or_else(|p| p.into_inner()));
        let Some(service) = snapshot.smtp.clone() else {
            // A reload removed the SMTP section; the listener lives until restart.
            refuse(
                stream,
                "localhost",
                "4.3.2 Service not available, try again later",
            );
            continue;
        };
        let settings = service.settings_for(&endpoint);
        let metrics = Arc::clone(snapshot.journal.metrics());
        let ip = peer.ip().to_canonical();
        let limits = if snapshot.config.is_trusted(ip) {
            None
        } else {
            let smtp = &snapshot.config.smtp;
            let network = network_of(ip, smtp.network_prefix_v4, smtp.network_prefix_v6);
            let taken = match Arc::clone(slots).try_acquire_owned() {
                Err(_) => Err((
                    SmtpRefusal::Total,
                    "4.3.2 Too many connections, try again later",
                )),
                Ok(permit) => match per_address.take(ip, smtp.max_connections_per_ip) {
                    None => Err((
                        SmtpRefusal::Address,
                        "4.7.0 Too many connections from your address",
                    )),
                    Some(address) => {
                        match per_network.take(network, smtp.max_connections_per_network) {
                            None => Err((
                                SmtpRefusal::Network,
                                "4.7.0 Too many connections from your network",
                            )),
                            Some(net) => Ok((permit, address, net)),
                        }
                    }
                },
            };
            match taken {
                Ok(held) => Some(held),
                Err((why, text)) => {
                    tracing::warn!(%peer, limit = ?why, "smtp: connection refused at a limit");
                    metrics.smtp_refused(why);
                    refuse(stream, &settings.hostname, text);
                    continue;
                }
            }
        };
        if let crate::runtime::smtp_service::HopConfig::Relay(relay) = &service.hop {
            // Whether the next hop offers DSN, learnt once per configuration (RFC 3461).
            crate::relay::probe_dsn(relay);
        }
        let hop = Hop::new(&service.hop);
        let stop_rx = stop.clone();
        let load_guard = load.opened();
        let load = Arc::clone(load);
        let guard = Arc::clone(&shared.guard);
        sessions.spawn(async move {
            let _open = metrics.connection_opened();
            let _ = stream.set_nodelay(true);
            serve_connection(stream, peer, snapshot, settings, hop, load, guard, stop_rx).await;
            drop(load_guard);
            drop(limits);
        });
    }
    sessions
}

/// Answers 421 and closes, without waiting on a slow client.
fn refuse(mut stream: TcpStream, hostname: &str, text: &str) {
    let line = format!("421 {hostname} {text}\r\n");
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.write_all(line.as_bytes()),
        )
        .await;
        let _ = stream.shutdown().await;
    });
}
