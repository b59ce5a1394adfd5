//! A TCP router that can cut links between nodes, for partition tests.
//!
//! Every node's raft address in the membership is a proxy port on 127.0.0.1 owned by the router,
//! which forwards to the node's real listener. Nodes dial out from their own loopback address
//! (`127.0.0.<10 + id>`, the network's `source_ip`), so the router knows the sender of every
//! connection. Cutting the directed link `from -> to` drops the live connections `from` opened to
//! `to` and refuses new ones: a real partition at the TCP level, TLS and gRPC untouched.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The loopback address node `id` dials out from.
pub fn node_ip(id: u64) -> IpAddr {
    let last = u8::try_from(10 + id).expect("node ids are small");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The node a connection comes from, by its source address.
fn sender(peer: SocketAddr) -> Option<u64> {
    match peer.ip() {
        IpAddr::V4(ip) if ip.octets()[..3] == [127, 0, 0] && ip.octets()[3] > 10 => {
            Some(u64::from(ip.octets()[3]) - 10)
        }
        _ => None,
    }
}

#[derive(Default)]
struct State {
    /// Directed links `(from, to)` that are cut.
    cut: HashSet<(u64, u64)>,
    /// Where each node's proxy forwards to.
    upstream: HashMap<u64, SocketAddr>,
    /// Live connections per directed link, by connection number.
    live: HashMap<(u64, u64), HashMap<u64, CancellationToken>>,
    next_conn: u64,
}

/// The router; clones share state. Dropping the last clone does not stop the proxies: cancel the
/// token given to [`Router::new`].
#[derive(Clone)]
pub struct Router {
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
}

impl Router {
    pub fn new(shutdown: CancellationToken) -> Self {
        Router { state: Arc::default(), shutdown }
    }

    /// Starts the proxy in front of node `to` and returns its address (what the membership holds).
    pub async fn add_node(&self, to: u64, upstream: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.state.lock().upstream.insert(to, upstream);
        let router = self.clone();
        tokio::spawn(async move {
            loop {
                let (client, peer) = tokio::select! {
                    () = router.shutdown.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                tokio::spawn(router.clone().forward(client, peer, to));
            }
        });
        Ok(addr)
    }

    /// Points node `to`'s proxy at a new listener (after a restart).
    pub fn set_upstream(&self, to: u64, upstream: SocketAddr) {
        self.state.lock().upstream.insert(to, upstream);
    }

    /// Cuts the directed link `from -> to`.
    pub fn cut(&self, from: u64, to: u64) {
        let mut state = self.state.lock();
        state.cut.insert((from, to));
        for (_, conn) in state.live.remove(&(from, to)).unwrap_or_default() {
            conn.cancel();
        }
    }

    /// Cuts every link between `node` and `others`, both ways.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        for &other in others.iter().filter(|&&o| o != node) {
            self.cut(node, other);
            self.cut(other, node);
        }
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        self.state.lock().cut.clear();
    }

    async fn forward(self, mut client: TcpStream, peer: SocketAddr, to: u64) {
        let Some(from) = sender(peer) else {
            return; // not a node: refuse
        };
        let (upstream, conn, token) = {
            let mut state = self.state.lock();
            if state.cut.contains(&(from, to)) {
                return;
            }
            let Some(&upstream) = state.upstream.get(&to) else { return };
            let conn = state.next_conn;
            state.next_conn += 1;
            let token = self.shutdown.child_token();
            state.live.entry((from, to)).or_default().insert(conn, token.clone());
            (upstream, conn, token)
        };
        if let Ok(mut server) = TcpStream::connect(upstream).await {
            let _ = server.set_nodelay(true);
            let _ = client.set_nodelay(true);
            tokio::select! {
                () = token.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            }
        }
        if let Some(live) = self.state.lock().live.get_mut(&(from, to)) {
            live.remove(&conn);
        }
    }
}
