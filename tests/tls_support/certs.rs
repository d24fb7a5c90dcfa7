//! Test certificates for TLS distribution, generated with rcgen: a CA, a
//! node certificate it signs (used by every node of a test, Rust or BEAM,
//! on both sides), and a "wrong" certificate from another CA. Node
//! certificates name 127.0.0.1 (IP SAN), localhost and this host (DNS SANs).
//!
//! Shared by tests/dist_tls.rs, benches/tls.rs and examples/tls_certs.rs
//! (`#[path]`), so it depends on nothing but rcgen and std.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io;
use std::path::{Path, PathBuf};

/// The files of one test PKI, all PEM, in one directory.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    /// The CA every good node trusts.
    pub ca: PathBuf,
    /// A node certificate signed by `ca`, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A certificate and key signed by another CA (`other_ca`).
    pub wrong_cert: PathBuf,
    pub wrong_key: PathBuf,
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

fn node_cert(
    name: &str,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> Result<(rcgen::Certificate, KeyPair), rcgen::Error> {
    let mut dns = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" {
            dns.push(h.to_owned());
            if let Some(short) = h.split('.').next().filter(|s| *s != h) {
                dns.push(short.to_owned());
            }
        }
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for name in dns {
        // DNS SANs as given, "127.0.0.1" included (new() would make it an IP SAN).
        params
            .subject_alt_names
            .push(SanType::DnsName(name.try_into()?));
    }
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca, ca_key)?;
    Ok((cert, key))
}

/// Writes a fresh PKI into `dir` (created if needed).
pub fn generate(dir: &Path) -> io::Result<Pki> {
    let err = |e: rcgen::Error| io::Error::other(e.to_string());
    std::fs::create_dir_all(dir)?;
    let (ca_cert, ca_key) = ca("erl_quorum test CA").map_err(err)?;
    let (other_cert, other_key) = ca("some other CA").map_err(err)?;
    let (cert, key) = node_cert("erl_quorum node", &ca_cert, &ca_key).map_err(err)?;
    let (wrong, wrong_key) = node_cert("wrong node", &other_cert, &other_key).map_err(err)?;
    let pki = Pki {
        dir: dir.to_owned(),
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
        wrong_cert: dir.join("wrong.pem"),
        wrong_key: dir.join("wrong.key"),
        other_ca: dir.join("other_ca.pem"),
    };
    std::fs::write(&pki.ca, ca_cert.pem())?;
    std::fs::write(&pki.other_ca, other_cert.pem())?;
    std::fs::write(&pki.cert, cert.pem())?;
    std::fs::write(&pki.key, key.serialize_pem())?;
    std::fs::write(&pki.wrong_cert, wrong.pem())?;
    std::fs::write(&pki.wrong_key, wrong_key.serialize_pem())?;
    Ok(pki)
}

/// What one side of an `ssl_dist.conf` holds.
#[derive(Clone, Debug)]
pub struct Side<'a> {
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub ca: &'a Path,
    pub verify_peer: bool,
    pub fail_if_no_peer_cert: bool,
    /// e.g. `Some("['tlsv1.2']")`.
    pub versions: Option<&'a str>,
}

impl Side<'_> {
    fn render(&self, server: bool) -> String {
        let mut opts = Vec::new();
        if let Some(c) = self.cert {
            opts.push(format!("{{certfile, {:?}}}", c.display().to_string()));
        }
        if let Some(k) = self.key {
            opts.push(format!("{{keyfile, {:?}}}", k.display().to_string()));
        }
        opts.push(format!(
            "{{cacertfile, {:?}}}",
            self.ca.display().to_string()
        ));
        let verify = if self.verify_peer {
            "verify_peer"
        } else {
            "verify_none"
        };
        opts.push(format!("{{verify, {verify}}}"));
        if server {
            opts.push(format!(
                "{{fail_if_no_peer_cert, {}}}",
                self.fail_if_no_peer_cert
            ));
        }
        if let Some(v) = self.versions {
            opts.push(format!("{{versions, {v}}}"));
        }
        opts.join(", ")
    }
}

impl Pki {
    /// Mutual authentication with this PKI's node certificate.
    pub fn good(&self) -> Side<'_> {
        Side {
            cert: Some(&self.cert),
            key: Some(&self.key),
            ca: &self.ca,
            verify_peer: true,
            fail_if_no_peer_cert: true,
            versions: None,
        }
    }

    /// The wrong certificate (from the other CA), still trusting the good
    /// CA: whatever refuses a connection is then the other side's check
    /// of this certificate, never this side's check of the other's.
    pub fn wrong(&self) -> Side<'_> {
        Side {
            cert: Some(&self.wrong_cert),
            key: Some(&self.wrong_key),
            ..self.good()
        }
    }

    /// Writes an `ssl_dist.conf` named `name` in the PKI's directory.
    pub fn optfile(&self, name: &str, server: &Side<'_>, client: &Side<'_>) -> io::Result<PathBuf> {
        let path = self.dir.join(name);
        let text = format!(
            "%% ssl_dist.conf written by the test\n[{{server, [{}]}},\n {{client, [{}]}}].\n",
            server.render(true),
            client.render(false)
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }
}
