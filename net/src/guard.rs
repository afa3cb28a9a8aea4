//! The server's UDP socket, with a look at every datagram before quinn
//! parses it: datagrams that cannot belong to this server's QUIC (too
//! short for a header, an unknown version, an Initial shorter than QUIC
//! allows, a short header whose connection id this server never issued) are
//! counted by reason. Quinn ignores them itself (or answers with a version
//! negotiation or a stateless reset); the count is what makes a flood of
//! junk visible in `/metrics`. A peer's stateless reset to us would count
//! as `unknown_cid`.
//!
//! Connection ids come from quinn's keyed generator, whose key the guard
//! shares, so it can tell its own ids from forged ones without state.

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn_proto::ConnectionIdGenerator;
/// The keyed generator whose ids [`classify`] recognises.
pub use quinn_proto::HashedConnectionIdGenerator;

/// Why a datagram cannot be QUIC for this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Junk {
    /// Too short to hold a QUIC header.
    NotQuic,
    /// A long header naming a version this server does not speak.
    BadVersion,
    /// An Initial packet in a datagram under QUIC's 1,200-byte minimum.
    ShortInitial,
    /// A short header whose destination connection id this server never issued.
    UnknownCid,
}

impl Junk {
    pub const ALL: [Junk; 4] = [Junk::NotQuic, Junk::BadVersion, Junk::ShortInitial, Junk::UnknownCid];

    /// The `reason` label of `dualplane_datagrams_dropped_total`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Junk::NotQuic => "not_quic",
            Junk::BadVersion => "bad_version",
            Junk::ShortInitial => "short_initial",
            Junk::UnknownCid => "unknown_cid",
        }
    }
}

/// Datagrams seen by the guard, by verdict.
#[derive(Debug, Default)]
pub struct GuardCounters {
    pub passed: AtomicU64,
    junk: [AtomicU64; 4],
}

impl GuardCounters {
    #[must_use]
    pub fn junk(&self, j: Junk) -> u64 {
        self.junk[j as usize].load(Ordering::Relaxed)
    }
}

/// QUIC v1 (RFC 9000), and the drafts quinn still accepts (29 to 34).
fn known_version(v: u32) -> bool {
    v == 1 || (0xff00_001d..=0xff00_0022).contains(&v)
}
/// Length of the connection ids this server issues (quinn's keyed generator).
pub const CID_LEN: usize = 8;

/// The verdict on one datagram: `None` when it may be QUIC for us. The
/// fixed bit (0x40) is not checked: peers may grease it (RFC 9287, which
/// quinn implements).
#[must_use]
pub fn classify(d: &[u8], ids: &dyn ConnectionIdGenerator) -> Option<Junk> {
    let Some(&first) = d.first() else { return Some(Junk::NotQuic) };
    if first & 0x80 != 0 {
        let Some(v) = d.get(1..5) else { return Some(Junk::NotQuic) };
        let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        if !known_version(version) {
            return Some(Junk::BadVersion);
        }
        // Long packet type 0 is Initial; a client must pad it to 1,200.
        if (first >> 4) & 0x03 == 0 && d.len() < 1200 {
            return Some(Junk::ShortInitial);
        }
        return None;
    }
    match d.get(1..=CID_LEN) {
        Some(cid) if ids.validate(&quinn::ConnectionId::new(cid)).is_ok() => None,
        Some(_) => Some(Junk::UnknownCid),
        None => Some(Junk::NotQuic),
    }
}

/// Builds the endpoint config and guarded socket of a server endpoint.
/// The key is random per process: ids need not survive a restart.
pub fn guarded(socket: std::net::UdpSocket) -> io::Result<(quinn::EndpointConfig, Arc<dyn AsyncUdpSocket>, Arc<GuardCounters>)> {
    let mut key = [0u8; 8];
    getrandom::fill(&mut key).map_err(|e| io::Error::other(format!("no randomness for the connection id key: {e}")))?;
    let key = u64::from_le_bytes(key);
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(key)));
    let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
    let counters = Arc::new(GuardCounters::default());
    let guard = Guard { inner, ids: HashedConnectionIdGenerator::from_key(key), counters: Arc::clone(&counters) };
    Ok((config, Arc::new(guard), counters))
}

/// A server endpoint on `bind` whose socket is guarded.
pub fn server_endpoint(server: quinn::ServerConfig, bind: SocketAddr) -> io::Result<(quinn::Endpoint, Arc<GuardCounters>)> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let (config, socket, counters) = guarded(socket)?;
    let ep = quinn::Endpoint::new_with_abstract_socket(config, Some(server), socket, Arc::new(quinn::TokioRuntime))?;
    Ok((ep, counters))
}

struct Guard {
    inner: Arc<dyn AsyncUdpSocket>,
    ids: HashedConnectionIdGenerator,
    counters: Arc<GuardCounters>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("inner", &self.inner).field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for Guard {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(&self, cx: &mut Context, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> Poll<io::Result<usize>> {
        let r = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &r {
            for (buf, m) in bufs.iter().zip(meta.iter()).take(*n) {
                let Some(data) = buf.get(..m.len) else { continue };
                // One receive may hold several datagrams of `stride` bytes (GRO).
                for d in data.chunks(m.stride.max(1)) {
                    match classify(d, &self.ids) {
                        None => self.counters.passed.fetch_add(1, Ordering::Relaxed),
                        Some(j) => self.counters.junk[j as usize].fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        }
        r
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> HashedConnectionIdGenerator {
        HashedConnectionIdGenerator::from_key(0x5eed)
    }

    #[test]
    fn junk_is_named_and_our_packets_pass() {
        let mut g = ids();
        assert_eq!(classify(&[], &g), Some(Junk::NotQuic));
        assert_eq!(classify(&[0xc0, 0, 0], &g), Some(Junk::NotQuic));
        assert_eq!(classify(&[0x40, 1, 2], &g), Some(Junk::NotQuic));
        // A long header with an unknown version, and a too-short Initial.
        assert_eq!(classify(&[0xc0, 0xba, 0xba, 0xba, 0xba, 0], &g), Some(Junk::BadVersion));
        let mut initial = vec![0xc0, 0, 0, 0, 1];
        initial.resize(600, 0);
        assert_eq!(classify(&initial, &g), Some(Junk::ShortInitial));
        initial.resize(1200, 0);
        assert_eq!(classify(&initial, &g), None);
        // Handshake packets (type 2) may be short.
        assert_eq!(classify(&[0xe0, 0, 0, 0, 1, 8], &g), None);
        // A short header with an id we issued passes; a forged one does not.
        let cid = g.generate_cid();
        let mut short = vec![0x40];
        short.extend_from_slice(&cid);
        short.extend_from_slice(&[0; 20]);
        assert_eq!(classify(&short, &g), None);
        // A greased fixed bit (RFC 9287) is still ours.
        short[0] = 0x00;
        assert_eq!(classify(&short, &g), None);
        short[3] ^= 1;
        assert_eq!(classify(&short, &g), Some(Junk::UnknownCid));
    }

    #[test]
    fn random_bytes_are_almost_never_passed() {
        let g = ids();
        let mut rng = sim_core::rng::WorldRng::from_seed(7);
        let mut passed = 0;
        for _ in 0..20_000 {
            let len = 1 + (rng.next_u64() % 1400) as usize;
            let d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            passed += usize::from(classify(&d, &g).is_none());
        }
        // Only a long header naming version 1 by chance (2^-32) or an id
        // that matches its 40-bit signature could pass.
        assert_eq!(passed, 0);
    }
}
