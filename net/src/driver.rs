//! The thin quinn/tokio glue: TLS and transport configuration for both
//! ends, dev credentials, control-frame IO, and a client connection.
//! Everything protocol-shaped lives in the sans-IO modules.

use crate::proto::{Frame, ProtoError, ALPN, MAX_FRAME, PROTOCOL_VERSION};
use crate::token::Role;
use crate::tls::{client_tls, server_tls, CertReloader, ServerIdentity, TlsError, Trust, VerifyLog};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("QUIC connect: {0}")]
    Connect(String),
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream: {0}")]
    Stream(String),
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("server refused: {reason} (code {code})")]
    Refused { code: u16, reason: String },
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The client refused the server's certificate; says what did not match.
    #[error("{0}")]
    Verify(String),
    #[error(transparent)]
    TlsSetup(#[from] TlsError),
}

/// Dev credentials: a token key and a self-signed certificate for
/// `localhost`, generated once into a directory that `serve`, `bot`,
/// `token` and the Python client all read.
#[derive(Debug, Clone)]
pub struct DevCredentials {
    pub dir: PathBuf,
    pub key: Vec<u8>,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

/// The dev directory: `$DUALPLANE_DEV_DIR`, else `$HOME/.dualplane/dev`.
#[must_use]
pub fn default_dev_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DUALPLANE_DEV_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".dualplane").join("dev")
}

fn read_or(path: &Path, make: impl FnOnce() -> Result<Vec<u8>, DriverError>) -> Result<Vec<u8>, DriverError> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = make()?;
            write_private(path, &b).map_err(|e| DriverError::Io(path.display().to_string(), e))?;
            Ok(b)
        }
        Err(e) => Err(DriverError::Io(path.display().to_string(), e)),
    }
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}

impl DevCredentials {
    /// Loads the dev credentials, generating any that are missing.
    pub fn load_or_create(dir: &Path) -> Result<DevCredentials, DriverError> {
        std::fs::create_dir_all(dir).map_err(|e| DriverError::Io(dir.display().to_string(), e))?;
        let key_hex = read_or(&dir.join("token.key"), || {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| DriverError::Tls(format!("no OS entropy for the token key: {e}")))?;
            Ok(hex::encode(k).into_bytes())
        })?;
        let key = hex::decode(String::from_utf8_lossy(&key_hex).trim()).map_err(|e| DriverError::Tls(format!("{}: token.key is not hex: {e}", dir.display())))?;
        let (cert_path, key_path) = (dir.join("cert.der"), dir.join("key.der"));
        if !cert_path.exists() || !key_path.exists() {
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).map_err(|e| DriverError::Tls(e.to_string()))?;
            std::fs::write(&cert_path, ck.cert.der()).map_err(|e| DriverError::Io(cert_path.display().to_string(), e))?;
            write_private(&key_path, &ck.key_pair.serialize_der()).map_err(|e| DriverError::Io(key_path.display().to_string(), e))?;
        }
        let cert_der = std::fs::read(&cert_path).map_err(|e| DriverError::Io(cert_path.display().to_string(), e))?;
        let key_der = std::fs::read(&key_path).map_err(|e| DriverError::Io(key_path.display().to_string(), e))?;
        Ok(DevCredentials { dir: dir.to_path_buf(), key, cert_der, key_der })
    }
}

/// Transport settings shared by both ends.
#[derive(Debug, Clone, Copy)]
pub struct TransportSettings {
    pub idle_timeout: Duration,
    pub keep_alive: Duration,
    /// Bytes a peer may send on one stream before this end reads them
    /// (QUIC flow control); `None`: quinn's default.
    pub stream_receive_window: Option<u32>,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings { idle_timeout: Duration::from_secs(10), keep_alive: Duration::from_secs(2), stream_receive_window: None }
    }
}

fn transport(t: TransportSettings) -> Result<Arc<quinn::TransportConfig>, DriverError> {
    let mut tc = quinn::TransportConfig::default();
    tc.max_idle_timeout(Some(quinn::IdleTimeout::try_from(t.idle_timeout).map_err(|e| DriverError::Tls(e.to_string()))?));
    tc.keep_alive_interval(Some(t.keep_alive));
    tc.datagram_receive_buffer_size(Some(1 << 20));
    tc.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    tc.max_concurrent_bidi_streams(1u32.into());
    tc.max_concurrent_uni_streams(0u32.into());
    if let Some(w) = t.stream_receive_window {
        tc.stream_receive_window(w.into());
        tc.receive_window(w.into());
    }
    Ok(Arc::new(tc))
}

/// Server endpoint config for the dev certificate: TLS 1.3, ALPN
/// `dualplane/1` only, 0-RTT off.
pub fn server_config(cert_der: &[u8], key_der: &[u8], t: TransportSettings) -> Result<quinn::ServerConfig, DriverError> {
    let id = ServerIdentity::Dev { cert_der: cert_der.to_vec(), key_der: key_der.to_vec() };
    Ok(server_config_for(&id, t)?.0)
}

/// Server endpoint config for any identity; with certificate files also
/// the reloader that re-reads them.
pub fn server_config_for(identity: &ServerIdentity, t: TransportSettings) -> Result<(quinn::ServerConfig, Option<Arc<CertReloader>>), DriverError> {
    let (tls, reloader) = server_tls(identity, ALPN)?;
    let qc = QuicServerConfig::try_from(tls).map_err(|e| DriverError::Tls(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(qc));
    sc.transport_config(transport(t)?);
    Ok((sc, reloader))
}

/// Client config for `trust`, offering `alpn`; and where its verifier
/// explains a refusal.
pub fn client_config(trust: &Trust, alpn: &[u8], t: TransportSettings) -> Result<(quinn::ClientConfig, VerifyLog), DriverError> {
    let (tls, log) = client_tls(trust, alpn)?;
    let qc = QuicClientConfig::try_from(tls).map_err(|e| DriverError::Tls(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(qc));
    cc.transport_config(transport(t)?);
    Ok((cc, log))
}

/// Writes one control frame.
pub async fn write_frame(send: &mut quinn::SendStream, f: &Frame) -> Result<(), DriverError> {
    send.write_all(&f.encode()).await.map_err(|e| DriverError::Stream(e.to_string()))
}

/// Reads one control frame; refuses frames over `MAX_FRAME` before reading them.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<Frame>, DriverError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(DriverError::Stream(e.to_string())),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(DriverError::Proto(ProtoError::TooLarge(n)));
    }
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body).await.map_err(|e| DriverError::Stream(e.to_string()))?;
    Ok(Some(Frame::decode(&body)?))
}

/// What [`spawn_frame_reader`] delivers: each frame, then how the stream
/// ended (`Ok(None)` for a clean finish, or the error).
pub type FrameRx = tokio::sync::mpsc::Receiver<Result<Option<Frame>, DriverError>>;

/// Reads control-stream frames on their own task: `read_frame` is two reads
/// and not cancel-safe, so it must never be a `select!` branch racing
/// datagrams. A full channel stalls the stream (QUIC flow control pushes
/// back). Abort the handle when the connection is done.
pub fn spawn_frame_reader(mut recv: quinn::RecvStream) -> (tokio::task::JoinHandle<()>, FrameRx) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let f = read_frame(&mut recv).await;
            let end = !matches!(f, Ok(Some(_)));
            if tx.send(f).await.is_err() || end {
                break;
            }
        }
    });
    (task, rx)
}

/// A connected, welcomed client.
#[derive(Debug)]
pub struct Connected {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub welcome: Frame,
}

/// How a client reaches and checks a server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub trust: Trust,
    /// The name the certificate must carry (default: the host of the
    /// address; `localhost` for a pinned certificate on an IP address).
    pub server_name: Option<String>,
    pub alpn: Vec<u8>,
    pub transport: TransportSettings,
}

impl ClientOptions {
    /// Trust exactly this (dev) certificate.
    #[must_use]
    pub fn pinned(cert_der: &[u8]) -> ClientOptions {
        ClientOptions { trust: Trust::pin_der(cert_der), server_name: None, alpn: ALPN.to_vec(), transport: TransportSettings::default() }
    }

    #[must_use]
    pub fn trusting(trust: Trust) -> ClientOptions {
        ClientOptions { trust, server_name: None, alpn: ALPN.to_vec(), transport: TransportSettings::default() }
    }
}

/// Splits `host:port` (or `[v6]:port`) and resolves the host: its first
/// address and the host name.
pub async fn resolve(target: &str) -> Result<(std::net::SocketAddr, String), DriverError> {
    let (all, host) = resolve_all(target).await?;
    Ok((all[0], host))
}

/// Every address of `host:port` (at least one), IPv4 first (a server bound
/// to 127.0.0.1 is the common case for `localhost`), and the host name.
pub async fn resolve_all(target: &str) -> Result<(Vec<std::net::SocketAddr>, String), DriverError> {
    if let Ok(a) = target.parse::<std::net::SocketAddr>() {
        return Ok((vec![a], a.ip().to_string()));
    }
    let bad = || DriverError::Connect(format!("server {target:?}: expected host:port (a name or an IP address, and a port)"));
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let mut addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port)).await.map_err(|e| DriverError::Connect(format!("cannot resolve {host:?}: {e}")))?.collect();
    addrs.sort_by_key(std::net::SocketAddr::is_ipv6);
    addrs.dedup();
    if addrs.is_empty() {
        return Err(DriverError::Connect(format!("{host:?} resolves to no address")));
    }
    Ok((addrs, host.to_string()))
}

/// Connects, sends Hello, waits for Welcome (or a Bye, as an error).
/// Trusts exactly `cert_der` (the dev certificate).
pub async fn connect(addr: std::net::SocketAddr, cert_der: &[u8], role: Role, token: &str) -> Result<Connected, DriverError> {
    connect_with(addr, cert_der, ALPN, role, token, TransportSettings::default()).await
}

pub async fn connect_with(addr: std::net::SocketAddr, cert_der: &[u8], alpn: &[u8], role: Role, token: &str, t: TransportSettings) -> Result<Connected, DriverError> {
    let opts = ClientOptions { alpn: alpn.to_vec(), transport: t, ..ClientOptions::pinned(cert_der) };
    connect_to(&addr.to_string(), &opts, role, token).await
}

/// Resolves `target` (`host:port`), connects with `opts`' trust and name,
/// sends Hello and waits for Welcome. A certificate the client refuses is
/// [`DriverError::Verify`], saying what did not match.
pub async fn connect_to(target: &str, opts: &ClientOptions, role: Role, token: &str) -> Result<Connected, DriverError> {
    let (addrs, host) = resolve_all(target).await?;
    let last = addrs.len() - 1;
    let mut tried = Vec::new();
    let mut done = None;
    for (i, addr) in addrs.into_iter().enumerate() {
        // Every address but the last gets a short handshake window (an
        // address nobody listens on answers nothing over UDP).
        let attempt = handshake(addr, &host, opts);
        let r = if i == last { attempt.await } else { tokio::time::timeout(Duration::from_secs(2), attempt).await.unwrap_or(Err(DriverError::Timeout("the QUIC handshake"))) };
        match r {
            Err(e @ (DriverError::Timeout(_) | DriverError::Connection(_))) if i < last => tried.push(format!("{addr}: {e}")),
            Err(e) if !tried.is_empty() => return Err(DriverError::Connect(format!("no address of {target} answered: {}; {addr}: {e}", tried.join("; ")))),
            Err(e) => return Err(e),
            Ok(ec) => {
                done = Some(ec);
                break;
            }
        }
    }
    let Some((endpoint, conn)) = done else { return Err(DriverError::Connect(format!("no address of {target} answered: {}", tried.join("; ")))) };
    hello(endpoint, conn, role, token).await
}

/// The QUIC + TLS handshake with one address; a refused certificate is
/// [`DriverError::Verify`]. (Public for the fault lab's clients that
/// connect and then never say Hello.)
pub async fn handshake(addr: std::net::SocketAddr, host: &str, opts: &ClientOptions) -> Result<(quinn::Endpoint, quinn::Connection), DriverError> {
    let host = host.to_string();
    let name = match (&opts.server_name, &opts.trust) {
        (Some(n), _) => n.clone(),
        (None, Trust::Pin(_)) if host.parse::<std::net::IpAddr>().is_ok() => "localhost".to_string(),
        (None, _) => host,
    };
    let bind: std::net::SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(|_| DriverError::Connect("bind address".into()))?;
    let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| DriverError::Io("client endpoint".into(), e))?;
    let (cc, log) = client_config(&opts.trust, &opts.alpn, opts.transport)?;
    endpoint.set_default_client_config(cc);
    match endpoint.connect(addr, &name).map_err(|e| DriverError::Connect(format!("{name:?}: {e}")))?.await {
        Ok(c) => Ok((endpoint, c)),
        Err(e) => Err(match log.lock().ok().and_then(|mut l| l.take()) {
            Some(why) => DriverError::Verify(why),
            None => DriverError::Connection(e),
        }),
    }
}

/// Sends Hello on a fresh control stream and waits for Welcome.
async fn hello(endpoint: quinn::Endpoint, conn: quinn::Connection, role: Role, token: &str) -> Result<Connected, DriverError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &Frame::Hello { version: PROTOCOL_VERSION, schema_hash: sim_core::PORTS_SCHEMA_HASH, role, token: token.to_string() }).await?;
    let welcome = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut recv)).await.map_err(|_| DriverError::Timeout("welcome"))??;
    match welcome {
        Some(w @ Frame::Welcome { .. }) => Ok(Connected { endpoint, conn, send, recv, welcome: w }),
        Some(Frame::Bye { code, reason }) => Err(DriverError::Refused { code, reason }),
        Some(_) => Err(DriverError::Proto(ProtoError::Malformed("expected Welcome"))),
        None => Err(DriverError::Refused { code: crate::proto::bye::PROTOCOL, reason: "stream closed".into() }),
    }
}
