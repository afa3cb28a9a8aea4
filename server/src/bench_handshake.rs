//! `dualplane bench handshake`: what production trust costs a connect. The
//! same loopback QUIC handshake (TLS 1.3, ALPN dualplane/1) with a CA-signed
//! chain that the client verifies by name, and with the pinned self-signed
//! dev certificate, interleaved in one run; the ratio is what to read.

use net::driver::{client_config, server_config_for, TransportSettings};
use net::proto::ALPN;
use net::tls::{ServerIdentity, Trust};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct HandshakeArgs {
    /// Handshakes per kind.
    #[arg(long, default_value_t = 50)]
    n: u32,
    #[arg(long)]
    json: bool,
}

struct Kind {
    name: &'static str,
    identity: ServerIdentity,
    trust: Trust,
}

fn kinds(dir: &std::path::Path) -> anyhow::Result<Vec<Kind>> {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "bench CA");
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    let (cert, key, ca_file) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.pem"));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca_cert.pem()))?;
    std::fs::write(&key, leaf_key.serialize_pem())?;
    std::fs::write(&ca_file, ca_cert.pem())?;
    let dev = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    Ok(vec![
        Kind { name: "ca_chain_by_name", identity: ServerIdentity::Files { cert, key }, trust: Trust::Ca(ca_file) },
        Kind { name: "pinned_dev", identity: ServerIdentity::Dev { cert_der: dev.cert.der().to_vec(), key_der: dev.key_pair.serialize_der() }, trust: Trust::pin_der(dev.cert.der()) },
    ])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
}

pub fn run(a: &HandshakeArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let kinds = kinds(dir.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let t = TransportSettings::default();
    let times: Vec<Vec<f64>> = rt.block_on(async {
        let mut servers = Vec::new();
        for k in &kinds {
            let (sc, _) = server_config_for(&k.identity, t)?;
            let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse()?)?;
            let accept = ep.clone();
            tokio::spawn(async move {
                while let Some(inc) = accept.accept().await {
                    tokio::spawn(async move {
                        if let Ok(c) = inc.await {
                            let _ = c.closed().await;
                        }
                    });
                }
            });
            let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
            client.set_default_client_config(client_config(&k.trust, ALPN, t)?.0);
            servers.push((ep.local_addr()?, client));
        }
        let mut times = vec![Vec::new(); kinds.len()];
        // Interleaved, after one warm-up each: the machine's noise hits both.
        for round in 0..=a.n {
            for (i, (addr, client)) in servers.iter().enumerate() {
                let t0 = Instant::now();
                let c = client.connect(*addr, "localhost")?.await?;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                c.close(0u32.into(), b"bench");
                if round > 0 {
                    times[i].push(ms);
                }
            }
        }
        anyhow::Ok(times)
    })?;
    let mut out = serde_json::Map::new();
    let mut p50s = Vec::new();
    for (k, mut v) in kinds.iter().zip(times) {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
        p50s.push(p50);
        out.insert(k.name.to_string(), serde_json::json!({"handshakes": v.len(), "mean_ms": mean, "p50_ms": p50, "p99_ms": p99}));
        if !a.json {
            println!("{:<18} {:>4} handshakes: mean {mean:.3} ms, p50 {p50:.3} ms, p99 {p99:.3} ms", k.name, v.len());
        }
    }
    let ratio = p50s[0] / p50s[1].max(1e-9);
    out.insert("chain_over_pinned_p50".into(), serde_json::json!(ratio));
    if a.json {
        println!("{}", serde_json::Value::Object(out));
    } else {
        println!("chain verified by name / pinned dev certificate (p50): {ratio:.2}x");
    }
    Ok(ExitCode::SUCCESS)
}
