//! Production trust over real QUIC on loopback: a real certificate chain
//! (a CA and leaves made here with rcgen) that clients verify by name, with
//! each kind of refusal explained; a certificate rotated on disk; and
//! connect tokens bound to a server, a match and a key ring that rotates.

mod common;

use common::{start, unix};
use net::driver::{connect_to, ClientOptions, Connected, DriverError};
use net::tls::{fingerprint, Trust};
use net::token::{mint, Role, TokenSpec};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::Path;
use std::time::{Duration, Instant};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    Ca { cert: p.self_signed(&key).expect("self-signed"), key }
}

/// A leaf for `names` signed by `ca`, written as PEM (`cert`, `key`); its DER.
fn leaf(ca: &Ca, names: &[&str], expired: bool, cert: &Path, key: &Path) -> Vec<u8> {
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let k = KeyPair::generate().expect("key");
    let c = p.signed_by(&k, &ca.cert, &ca.key).expect("signed");
    // Key first, then the chain: a reader that sees the new chain sees its key.
    std::fs::write(key, k.serialize_pem()).expect("write key");
    std::fs::write(cert, format!("{}{}", c.pem(), ca.cert.pem())).expect("write chain");
    c.der().to_vec()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("rt")
}

fn verify_error(r: Result<Connected, DriverError>) -> String {
    match r {
        Err(DriverError::Verify(why)) => why,
        Err(e) => format!("not a verification error: {e}"),
        Ok(_) => "ADMITTED".into(),
    }
}

fn refused(r: Result<Connected, DriverError>) -> String {
    match r {
        Err(DriverError::Refused { reason, .. }) => reason,
        Err(e) => format!("error: {e}"),
        Ok(_) => "ADMITTED".into(),
    }
}

#[test]
fn clients_verify_a_real_chain_by_name_and_a_rotated_certificate_is_served_to_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let good_ca = ca("dualplane test CA");
    let first = leaf(&good_ca, &["localhost", "game.test"], false, &cert, &key);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, good_ca.cert.pem()).expect("ca");
    let other_ca = ca("someone else");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other_ca.cert.pem()).expect("other ca");
    let s = start(dir.path(), &["--tls-cert", cert.to_str().expect("utf8"), "--tls-key", key.to_str().expect("utf8")]);
    let target = format!("localhost:{}", s.addr.port());
    let creds = net::driver::DevCredentials::load_or_create(dir.path()).expect("creds");
    let token = |id: u32| mint(&creds.key, &TokenSpec::dev(id, Role::Player, unix() + 60, u64::from(id)));
    let by_ca = ClientOptions::trusting(Trust::Ca(ca_file.clone()));
    rt().block_on(async {
        // A client trusting only the CA connects by host name.
        let keep = connect_to(&target, &by_ca, Role::Player, &token(1)).await.expect("CA-verified connect by name");
        // The other name on the certificate works too.
        let named = ClientOptions { server_name: Some("game.test".into()), ..by_ca.clone() };
        connect_to(&target, &named, Role::Player, &token(2)).await.expect("connect as game.test");
        // A wrong server name, an untrusted CA and a pin mismatch: each its own message.
        let wrong = ClientOptions { server_name: Some("evil.test".into()), ..by_ca.clone() };
        let e = verify_error(connect_to(&target, &wrong, Role::Player, &token(3)).await);
        assert!(e.contains("not valid for \"evil.test\" (it is for localhost, game.test)"), "{e}");
        let e = verify_error(connect_to(&target, &ClientOptions::trusting(Trust::Ca(other_file.clone())), Role::Player, &token(4)).await);
        assert!(e.contains("not signed by the CA in") && e.contains("other.pem"), "{e}");
        let e = verify_error(connect_to(&target, &ClientOptions::pinned(&creds.cert_der), Role::Player, &token(5)).await);
        assert!(e.contains("does not match the pin") && e.contains(&fingerprint(&first)), "{e}");
        // A pin of the real leaf works.
        let pin = ClientOptions::trusting(Trust::pin(&fingerprint(&first)).expect("pin"));
        connect_to(&target, &pin, Role::Player, &token(6)).await.expect("pinned leaf");

        // Rotate the certificate on disk: the next connection gets the new
        // leaf, the existing session keeps receiving snapshots.
        let second = leaf(&good_ca, &["localhost"], false, &cert, &key);
        let new_pin = ClientOptions::trusting(Trust::pin(&fingerprint(&second)).expect("pin"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut id = 100;
        loop {
            id += 1;
            match connect_to(&target, &new_pin, Role::Player, &token(id)).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the rotated certificate was never served: {e}"),
            }
        }
        let mut got = 0;
        let until = Instant::now() + Duration::from_secs(3);
        while got < 30 && Instant::now() < until {
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), keep.conn.read_datagram()).await {
                got += 1;
            }
        }
        assert!(got >= 30, "the session from before the rotation stopped: {got} snapshots");
        assert!(keep.conn.close_reason().is_none());

        // An expired leaf is refused by name-checking clients, with a reason.
        leaf(&good_ca, &["localhost"], true, &cert, &key);
        let deadline = Instant::now() + Duration::from_secs(10);
        let e = loop {
            id += 1;
            let e = verify_error(connect_to(&target, &by_ca, Role::Player, &token(id)).await);
            if e.contains("expired") || Instant::now() > deadline {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(e.contains("expired at unix"), "{e}");
        keep.conn.close(0u32.into(), b"done");
    });
    let out = s.lines.lock().map(|l| l.join("")).unwrap_or_default();
    assert!(out.contains("re-read when it changes"), "{out}");
}

#[test]
fn tokens_are_bound_to_server_match_and_key_ring_and_refusals_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    let (k1, k2) = ([1u8; 32], [2u8; 32]);
    std::fs::write(keys.join("1.key"), hex_of(&k1)).expect("1.key");
    let stats_a = dir.path().join("a.json");
    let keys_s = keys.to_str().expect("utf8");
    let a = start(dir.path(), &["--server-id", "gs-a", "--match-id", "m1", "--token-keys", keys_s, "--stats-json", stats_a.to_str().expect("utf8")]);
    let b = start(dir.path(), &["--server-id", "gs-b", "--match-id", "m1", "--token-keys", keys_s]);
    let creds = net::driver::DevCredentials::load_or_create(dir.path()).expect("creds");
    let opts = ClientOptions::pinned(&creds.cert_der);
    let spec = |key_id: u32, id: u32, server: &'static str, m: &'static str| TokenSpec { key_id, client_id: id, role: Role::Player, expires_at: unix() + 60, nonce: u64::from(id), server_id: server, match_id: m };
    let (ta, tb) = (a.addr.to_string(), b.addr.to_string());
    rt().block_on(async {
        let good = connect_to(&ta, &opts, Role::Player, &mint(&k1, &spec(1, 1, "gs-a", "m1"))).await.expect("good client");
        let for_a = mint(&k1, &spec(1, 2, "gs-a", "m1"));
        assert!(refused(connect_to(&tb, &opts, Role::Player, &for_a).await).starts_with("wrong_server: token is not for this server"));
        let r = refused(connect_to(&ta, &opts, Role::Player, &mint(&k1, &spec(1, 3, "gs-a", "m2"))).await);
        assert!(r.starts_with("wrong_match:"), "{r}");
        let r = refused(connect_to(&ta, &opts, Role::Player, &mint(&k2, &spec(2, 4, "gs-a", "m1"))).await);
        assert!(r.starts_with("unknown_key:"), "key 2 is not in the ring yet: {r}");
        // Reuse is per server: the token B refused still admits once on A.
        connect_to(&ta, &opts, Role::Player, &for_a).await.expect("the token for A works on A");
        assert!(refused(connect_to(&ta, &opts, Role::Player, &for_a).await).starts_with("reused:"));
        let r = refused(connect_to(&ta, &opts, Role::Observer, &mint(&k1, &spec(1, 5, "gs-a", "m1"))).await);
        assert!(r.starts_with("wrong_role:"), "{r}");
        let r = refused(connect_to(&ta, &opts, Role::Player, "02abcd").await);
        assert!(r.starts_with("malformed:"), "{r}");
        let r = refused(connect_to(&ta, &opts, Role::Player, &"ab".repeat(4000)).await);
        assert!(r.starts_with("malformed:"), "oversize: {r}");
        // Rotation: add key 2; once the server re-read its ring, new tokens
        // of key 2 and old tokens of key 1 both work.
        std::fs::write(keys.join("2.key"), hex_of(&k2)).expect("2.key");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut id = 10;
        loop {
            id += 1;
            match connect_to(&ta, &opts, Role::Player, &mint(&k2, &spec(2, id, "gs-a", "m1"))).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("key 2 never accepted: {e}"),
            }
        }
        connect_to(&ta, &opts, Role::Player, &mint(&k1, &spec(1, 50, "gs-a", "m1"))).await.expect("previous key still accepted");
        let r = refused(connect_to(&ta, &opts, Role::Player, &mint(&[9u8; 32], &spec(9, 51, "gs-a", "m1"))).await);
        assert!(r.starts_with("unknown_key:"), "{r}");
        // The good client was never disturbed.
        let mut client = net::session::ClientSession::new();
        let until = Instant::now() + Duration::from_secs(3);
        while client.stats.snapshots_applied < 30 && Instant::now() < until {
            if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_millis(500), good.conn.read_datagram()).await {
                client.on_datagram(&d);
                if let Some(ack) = client.poll_ack() {
                    let _ = good.conn.send_datagram(ack.into());
                }
            }
        }
        assert!(client.stats.snapshots_applied >= 30 && client.stats.hash_failures == 0, "{:?}", client.stats);
    });
    drop(b);
    assert!(a.terminate().success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats_a).expect("stats")).expect("json");
    for (k, n) in [("wrong_match", 1), ("unknown_key", 2), ("reused", 1), ("wrong_role", 1), ("malformed", 2)] {
        assert!(v["handshakes"][k].as_u64().unwrap_or(0) >= n, "{k}: {v}");
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_cli_mints_for_a_server_and_bots_reach_it_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path(), &["--server-id", "gs-x"]);
    let dev = dir.path().to_str().expect("utf8");
    let bot = |server_id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dualplane"))
            .args(["bot", "--server", &format!("localhost:{}", s.addr.port()), "--count", "2", "--duration", "2s", "--dev-dir", dev, "--server-id", server_id, "--json"])
            .output()
            .expect("bot")
    };
    let o = bot("gs-x");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["connected"], 2, "{v}");
    assert_eq!(v["hash_failures"], 0, "{v}");
    let o = bot("dev");
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("not for this server"), "{out}");
    // `dualplane token` binds what it mints.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dualplane"))
        .args(["token", "--client-id", "9", "--role", "observer", "--dev-dir", dev, "--server-id", "gs-x", "--match", "m-42", "--ttl", "5m"])
        .output()
        .expect("token");
    let t = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let c = net::token::decode(&t).expect("decodes").claims;
    assert_eq!((c.server_id.as_str(), c.match_id.as_str(), c.client_id, c.role, c.key_id), ("gs-x", "m-42", 9, Role::Observer, 0));
    assert!(c.expires_at >= unix() + 290 && c.expires_at <= unix() + 301);
}

#[test]
fn a_production_server_needs_no_dev_dir() {
    // With a certificate and a key directory, nothing is read from (or
    // made in) the dev dir: it may be on a read-only filesystem.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, keys) = (dir.path().join("tls.crt"), dir.path().join("tls.key"), dir.path().join("keys"));
    let c = ca("prod CA");
    leaf(&c, &["localhost"], false, &cert, &key);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, c.cert.pem()).expect("ca");
    std::fs::create_dir(&keys).expect("keys");
    std::fs::write(keys.join("3.key"), hex_of(&[3u8; 32])).expect("3.key");
    let unwritable = Path::new("/proc/dualplane-no-such-dir");
    let s = start(unwritable, &["--tls-cert", cert.to_str().expect("utf8"), "--tls-key", key.to_str().expect("utf8"), "--token-keys", keys.to_str().expect("utf8")]);
    let t = mint(&[3u8; 32], &TokenSpec { key_id: 3, ..TokenSpec::dev(1, Role::Player, unix() + 60, 1) });
    rt().block_on(async {
        connect_to(&format!("localhost:{}", s.addr.port()), &ClientOptions::trusting(Trust::Ca(ca_file)), Role::Player, &t).await.expect("connect");
    });
    assert!(!unwritable.exists());
}

/// The dev secrets the server generates are 0600, and a server whose dev
/// token key others can read refuses to start (naming the file and the fix)
/// unless told to.
#[cfg(unix)]
#[test]
fn dev_secrets_are_private_and_readable_ones_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    let dev_s = dev.to_str().expect("utf8");
    let out = Command::new(common::bin()).args(["token", "--client-id", "1", "--role", "player", "--dev-dir", dev_s]).output().expect("token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["token.key", "key.der"] {
        let mode = std::fs::metadata(dev.join(name)).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} was written with mode {mode:o}");
    }
    let serve = |extra: &[&str]| {
        Command::new(common::bin())
            .args(["serve", "--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0", "--dev-dir", dev_s, "--ticks", "3"])
            .args(extra)
            .output()
            .expect("serve")
    };
    assert!(serve(&[]).status.success(), "a private dev dir must start");
    std::fs::set_permissions(dev.join("token.key"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = serve(&[]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a world-readable token.key must be refused");
    assert!(err.contains("token.key") && err.contains("644") && err.contains("chmod 600") && err.contains("--allow-readable-keys"), "{err}");
    let allowed = serve(&["--allow-readable-keys"]);
    assert!(allowed.status.success(), "--allow-readable-keys must start: {}", String::from_utf8_lossy(&allowed.stderr));
}
