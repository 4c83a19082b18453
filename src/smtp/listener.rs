//! Accepting SMTP connections: the overall and per-address connection limits, answered with
//! 421 (RFC 5321 §3.8) rather than left waiting in the backlog, then one task per session.

use super::hop::Hop;
use super::session::serve_connection;
use crate::server::Current;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address until dropped.
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

/// Accepts until `stop` turns true; returns the sessions still running (the server drains
/// them within its grace period).
pub async fn accept_loop(
    listener: TcpListener,
    current: Current,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut sessions = JoinSet::new();
    let max = current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .config
        .smtp
        .max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let per_address = Arc::new(PerAddress::default());
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
        let settings = Arc::clone(&service.settings);
        let permit: OwnedSemaphorePermit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(%peer, "smtp: connection limit reached");
                refuse(
                    stream,
                    &settings.hostname,
                    "4.3.2 Too many connections, try again later",
                );
                continue;
            }
        };
        let per_ip = snapshot.config.smtp.max_connections_per_ip;
        let Some(address_slot) = per_address.take(peer.ip(), per_ip) else {
            tracing::warn!(%peer, "smtp: too many connections from this address");
            refuse(
                stream,
                &settings.hostname,
                "4.7.0 Too many connections from your address",
            );
            continue;
        };
        let hop = Hop::new(&service.hop);
        let metrics = Arc::clone(snapshot.journal.metrics());
        let stop_rx = stop.clone();
        sessions.spawn(async move {
            let _open = metrics.connection_opened();
            serve(stream, peer, snapshot, settings, hop, stop_rx).await;
            drop(address_slot);
            drop(permit);
        });
    }
    sessions
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    snapshot: Arc<crate::server::Snapshot>,
    settings: Arc<super::SmtpSettings>,
    hop: Hop,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    serve_connection(stream, peer, snapshot, settings, hop, stop).await;
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
