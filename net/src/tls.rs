//! Who the server is and how a client checks it: the server's certificate
//! (a configured PEM chain, re-read when the files change, or the dev
//! self-signed one), and the client's trust (system roots, a CA file, or a
//! pinned certificate), with verification failures explained in words.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{path}: {why}")]
    Bad { path: String, why: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("pin {0:?}: expected sha256:<64 hex digits> or a certificate file (PEM or DER)")]
    Pin(String),
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `sha256:<hex>` of a DER certificate: what a pin names.
#[must_use]
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Certificates from a file: every PEM `CERTIFICATE` block, or the whole
/// file as one DER certificate when it has none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Io(path.display().to_string(), e))?;
    let pem: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    if !pem.is_empty() {
        return Ok(pem);
    }
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(bytes)]);
    }
    Err(TlsError::Bad { path: path.display().to_string(), why: "expected PEM CERTIFICATE blocks or one DER certificate".into() })
}

/// A private key from a PEM file (PKCS#8, PKCS#1 or SEC1) or a DER PKCS#8 file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Io(path.display().to_string(), e))?;
    if let Ok(k) = PrivateKeyDer::from_pem_slice(&bytes) {
        return Ok(k);
    }
    if bytes.first() == Some(&0x30) {
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)));
    }
    Err(TlsError::Bad { path: path.display().to_string(), why: "expected a PEM private key or a DER PKCS#8 key".into() })
}

fn certified(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>, what: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::Bad { path: what.display().to_string(), why: "no certificate".into() });
    }
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| TlsError::Bad { path: what.display().to_string(), why: format!("certificate and key do not belong together or cannot be used: {e}") })
}

/// The certificate a server presents.
#[derive(Debug, Clone)]
pub enum ServerIdentity {
    /// The dev self-signed certificate (DER) and its PKCS#8 key.
    Dev { cert_der: Vec<u8>, key_der: Vec<u8> },
    /// A PEM full chain and key (cert-manager's `tls.crt` / `tls.key`),
    /// re-read when either file changes.
    Files { cert: PathBuf, key: PathBuf },
}

type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    /// The files' state when a load last failed.
    failed: Option<(Stamp, Stamp)>,
    checked: Instant,
}

/// Serves the certificate of a pair of files and re-reads them (at most
/// every [`CertReloader::CHECK_EVERY`], on a handshake) when they change.
/// A half-written pair (the key no longer matches the chain) keeps the old
/// certificate until both files agree. Sessions are never touched: a new
/// certificate is served to the next handshake.
#[derive(Debug)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Current>,
    /// Certificates loaded after the first.
    pub reloads: AtomicU64,
    /// Changes on disk that could not be loaded (the old one stays).
    pub reload_errors: AtomicU64,
}

impl CertReloader {
    pub const CHECK_EVERY: Duration = Duration::from_millis(200);

    pub fn new(cert: &Path, key: &Path) -> Result<CertReloader, TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let ck = certified(load_certs(cert)?, load_key(key)?, cert)?;
        Ok(CertReloader {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: Mutex::new(Current { key: ck, stamps, failed: None, checked: Instant::now() }),
            reloads: AtomicU64::new(0),
            reload_errors: AtomicU64::new(0),
        })
    }

    /// The end-entity certificate served now.
    #[must_use]
    pub fn leaf(&self) -> Option<Vec<u8>> {
        self.current.lock().ok().and_then(|c| c.key.cert.first().map(|c| c.to_vec()))
    }

    fn refresh(&self, c: &mut Current) {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        if stamps == c.stamps {
            return;
        }
        // Stamps are committed only on success: a failed load (half-written
        // pair, a permission fixed later) is retried on later handshakes,
        // and counted once per state of the files.
        match load_certs(&self.cert).and_then(|chain| certified(chain, load_key(&self.key)?, &self.cert)) {
            Ok(k) => {
                c.key = k;
                c.stamps = stamps;
                c.failed = None;
                self.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                if c.failed != Some(stamps) {
                    c.failed = Some(stamps);
                    self.reload_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl rustls::server::ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut c = self.current.lock().ok()?;
        if c.checked.elapsed() >= Self::CHECK_EVERY {
            c.checked = Instant::now();
            self.refresh(&mut c);
        }
        Some(Arc::clone(&c.key))
    }
}

/// A server-side rustls config: TLS 1.3 only, ALPN `alpn`, 0-RTT off. With
/// [`ServerIdentity::Files`] also the reloader, for its counters.
pub fn server_tls(identity: &ServerIdentity, alpn: &[u8]) -> Result<(rustls::ServerConfig, Option<Arc<CertReloader>>), TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(&[&rustls::version::TLS13])?.with_no_client_auth();
    let (mut tls, reloader) = match identity {
        ServerIdentity::Dev { cert_der, key_der } => {
            let certs = vec![CertificateDer::from(cert_der.clone())];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone()));
            (builder.with_single_cert(certs, key)?, None)
        }
        ServerIdentity::Files { cert, key } => {
            let r = Arc::new(CertReloader::new(cert, key)?);
            (builder.with_cert_resolver(Arc::clone(&r) as Arc<dyn rustls::server::ResolvesServerCert>), Some(r))
        }
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.max_early_data_size = 0;
    Ok((tls, reloader))
}

/// What a client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The operating system's roots (rustls-native-certs), name checked.
    System,
    /// The CA certificates of a file (PEM or DER), name checked.
    Ca(PathBuf),
    /// Exactly the certificate with this SHA-256 (dev: the self-signed
    /// certificate); the name is not checked, the handshake signature is.
    Pin([u8; 32]),
}

impl Trust {
    /// A pin from `sha256:<hex>` or from a certificate file.
    pub fn pin(spec: &str) -> Result<Trust, TlsError> {
        if let Some(h) = spec.strip_prefix("sha256:") {
            let b = hex::decode(h).map_err(|_| TlsError::Pin(spec.to_string()))?;
            return <[u8; 32]>::try_from(b.as_slice()).map(Trust::Pin).map_err(|_| TlsError::Pin(spec.to_string()));
        }
        let certs = load_certs(Path::new(spec)).map_err(|_| TlsError::Pin(spec.to_string()))?;
        Ok(Trust::pin_der(&certs[0]))
    }

    #[must_use]
    pub fn pin_der(der: &[u8]) -> Trust {
        Trust::Pin(Sha256::digest(der).into())
    }

    fn describe(&self) -> String {
        match self {
            Trust::System => "the system's root certificates".into(),
            Trust::Ca(p) => format!("the CA in {}", p.display()),
            Trust::Pin(h) => format!("the pinned certificate sha256:{}", hex::encode(h)),
        }
    }
}

/// The last verification failure of a client config, in words.
pub type VerifyLog = Arc<Mutex<Option<String>>>;

/// `DnsName("a.test")` (how webpki presents a name) as `a.test`.
fn bare_name(p: &str) -> &str {
    match (p.find('('), p.ends_with(')')) {
        (Some(i), true) => p[i + 1..p.len() - 1].trim_matches('"'),
        _ => p,
    }
}

fn explain(e: &rustls::Error, name: &ServerName<'_>, trusting: &str) -> String {
    let name = name.to_str();
    match e {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::NotValidForName => format!("the server's certificate is not valid for {name:?}"),
            CertificateError::NotValidForNameContext { presented, .. } => {
                let names: Vec<&str> = presented.iter().map(|p| bare_name(p)).collect();
                format!("the server's certificate is not valid for {name:?} (it is for {})", names.join(", "))
            }
            CertificateError::Expired => "the server's certificate has expired".into(),
            CertificateError::ExpiredContext { time, not_after } => {
                format!("the server's certificate expired at unix {} (now {})", not_after.as_secs(), time.as_secs())
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "the server's certificate is not valid yet".into(),
            CertificateError::UnknownIssuer => format!("the server's certificate is not signed by {trusting}"),
            CertificateError::BadSignature => "the server's certificate chain has a bad signature".into(),
            CertificateError::Revoked => "the server's certificate is revoked".into(),
            other => format!("the server's certificate was refused: {other:?}"),
        },
        other => format!("the server's certificate was refused: {other}"),
    }
}

/// The standard web-PKI verifier, explaining its refusals in the log.
#[derive(Debug)]
struct Explained {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    trusting: String,
    log: VerifyLog,
}

impl ServerCertVerifier for Explained {
    fn verify_server_cert(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], server_name: &ServerName<'_>, ocsp: &[u8], now: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now).inspect_err(|e| {
            if let Ok(mut l) = self.log.lock() {
                *l = Some(explain(e, server_name, &self.trusting));
            }
        })
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts exactly one certificate (by SHA-256); still checks that the
/// server holds its key (the handshake signature).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    log: VerifyLog,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(&self, end_entity: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        if let Ok(mut l) = self.log.lock() {
            *l = Some(format!("the server's certificate does not match the pin: expected sha256:{}, the server presented {}", hex::encode(self.pin), fingerprint(end_entity)));
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn roots(trust: &Trust) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Bad { path: "system roots".into(), why: format!("no usable root certificate found ({} errors); pass a CA file", found.errors.len()) });
            }
        }
        Trust::Ca(p) => {
            for c in load_certs(p)? {
                roots.add(c).map_err(|e| TlsError::Bad { path: p.display().to_string(), why: format!("not a usable CA certificate: {e}") })?;
            }
        }
        Trust::Pin(_) => {}
    }
    Ok(roots)
}

/// A client-side rustls config for `trust`, offering `alpn`, TLS 1.3 only,
/// no early data; and the log its verifier explains refusals in.
pub fn client_tls(trust: &Trust, alpn: &[u8]) -> Result<(rustls::ClientConfig, VerifyLog), TlsError> {
    let provider = provider();
    let log: VerifyLog = Arc::default();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::Pin(pin) => Arc::new(Pinned { pin: *pin, provider: Arc::clone(&provider), log: Arc::clone(&log) }),
        _ => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(trust)?), Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::Bad { path: trust.describe(), why: e.to_string() })?;
            Arc::new(Explained { inner, trusting: trust.describe(), log: Arc::clone(&log) })
        }
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.enable_early_data = false;
    Ok((tls, log))
}
