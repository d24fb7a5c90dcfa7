//! TLS distribution, as OTP's `inet_tls_dist` does it: a TCP connection,
//! a TLS handshake on it, then the distribution handshake and frames
//! inside TLS (with 4-byte length prefixes for the handshake messages too:
//! `inet_tls_dist` runs its TLS socket with `{packet, 4}` from the start).
//!
//! The options are those of an `ssl_dist.conf` file (`-ssl_dist_optfile`):
//!
//! ```erlang
//! [{server, [{certfile, "node.pem"}, {keyfile, "node.key"},
//!            {cacertfile, "ca.pem"}, {verify, verify_peer},
//!            {fail_if_no_peer_cert, true}]},
//!  {client, [{certfile, "node.pem"}, {keyfile, "node.key"},
//!            {cacertfile, "ca.pem"}, {verify, verify_peer}]}].
//! ```
//!
//! Understood per side: `certfile`, `keyfile` (defaults to `certfile`),
//! `cacertfile`, `verify` (`verify_peer` | `verify_none`),
//! `fail_if_no_peer_cert` (server) and `versions` (`'tlsv1.2'`,
//! `'tlsv1.3'`). Other options are ignored with a warning.
//!
//! What is checked, as `inet_tls_dist` does by default:
//! - server side, `verify_peer`: the client's chain must lead to a CA of
//!   `cacertfile`; no host name check (OTP only checks client host names
//!   with its opt-in `verify_client/3` fun). Without
//!   `fail_if_no_peer_cert`, a client without a certificate is served.
//!   `verify_none` (OTP's server default) asks for no certificate.
//! - client side, `verify_peer` (the default here, as from OTP 26): the
//!   server's chain must lead to a CA of `cacertfile`, and its certificate
//!   must name the host part of the node name we dial (OTP passes that host
//!   as `server_name_indication`, which ssl checks): an IP address
//!   (`n@127.0.0.1`) must be an IP SAN, a host name a DNS SAN.
//!   `verify_none` accepts any certificate (signatures still checked).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

use crate::term::{parse_term, Term};

/// An optfile larger than this is not an `ssl_dist.conf`.
const MAX_OPTFILE: usize = 64 << 10;

/// Why TLS options could not be read or used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The optfile is not of the `[{server, [...]}, {client, [...]}]` form.
    #[error("ssl_dist optfile: {0}")]
    Optfile(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA certificates could not make a verifier.
    #[error("TLS peer verification: {0}")]
    Verifier(String),
}

/// `verify_peer` or `verify_none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Check the peer's chain (and on the client side its host name).
    Peer,
    /// Check nothing about the peer's certificate.
    None,
}

/// One side's options (`server` or `client`) of an `ssl_dist.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSide {
    /// Our certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// Our private key (PEM); `certfile` when absent.
    pub keyfile: Option<PathBuf>,
    /// The CAs a peer's chain must lead to (PEM).
    pub cacertfile: Option<PathBuf>,
    /// `None`: the side's default (server `verify_none`, client `verify_peer`).
    pub verify: Option<Verify>,
    /// Server side: refuse a client that sends no certificate.
    pub fail_if_no_peer_cert: bool,
    /// Allowed TLS versions, e.g. `["tlsv1.2"]`; empty means 1.2 and 1.3.
    pub versions: Vec<String>,
}

/// Both sides' options, as an `ssl_dist.conf` gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Options for connections peers open to us.
    pub server: TlsSide,
    /// Options for connections we open.
    pub client: TlsSide,
}

impl TlsOptions {
    /// The same certificate, key and CA for both sides, `verify_peer` and
    /// `fail_if_no_peer_cert` (mutual authentication).
    pub fn mutual(cert: &Path, key: &Path, ca: &Path) -> Self {
        let side = TlsSide {
            certfile: Some(cert.to_owned()),
            keyfile: Some(key.to_owned()),
            cacertfile: Some(ca.to_owned()),
            verify: Some(Verify::Peer),
            fail_if_no_peer_cert: true,
            versions: Vec::new(),
        };
        Self {
            server: side.clone(),
            client: TlsSide {
                fail_if_no_peer_cert: false,
                ..side
            },
        }
    }

    /// Reads an `ssl_dist.conf` (`-ssl_dist_optfile`): one Erlang list
    /// `[{server, Opts}, {client, Opts}]`, `%` comments allowed. Relative
    /// paths are taken as they are (from the current directory), as OTP does.
    pub fn from_optfile(path: &Path) -> Result<Self, TlsError> {
        let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses the text of an `ssl_dist.conf`.
    pub fn parse(text: &str) -> Result<Self, TlsError> {
        if text.len() > MAX_OPTFILE {
            return Err(TlsError::Optfile(format!(
                "larger than {MAX_OPTFILE} bytes"
            )));
        }
        let term =
            parse_term(&strip_comments(text)).map_err(|e| TlsError::Optfile(e.to_string()))?;
        let mut options = Self::default();
        for entry in list_items(&term).ok_or_else(|| bad("the file must hold one list"))? {
            let (key, value) =
                pair(entry).ok_or_else(|| bad("entries are {server|client, [...]}"))?;
            let side = match key {
                "server" => &mut options.server,
                "client" => &mut options.client,
                _ => return Err(bad("entries are {server|client, [...]}")),
            };
            *side = parse_side(value)?;
        }
        Ok(options)
    }

    /// Builds the rustls configurations both sides use.
    pub fn build(&self) -> Result<TlsConfig, TlsError> {
        Ok(TlsConfig {
            server: Arc::new(server_config(&self.server)?),
            client: Arc::new(client_config(&self.client)?),
            options: self.clone(),
        })
    }
}

/// Built TLS settings of a node: when a node has them, every distribution
/// connection, accepted or dialed, runs inside TLS; none runs in clear.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
    options: TlsOptions,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("options", &self.options)
            .finish()
    }
}

fn bad(what: &str) -> TlsError {
    TlsError::Optfile(what.to_owned())
}

/// Drops `%` comments (outside strings and quoted atoms).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for c in line.chars() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c == '%' => break,
                None if c == '"' || c == '\'' => quote = Some(c),
                None => {}
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

fn list_items(term: &Term) -> Option<&[Term]> {
    match term {
        Term::List(l) => Some(&l.elements),
        _ => None,
    }
}

fn pair(term: &Term) -> Option<(&str, &Term)> {
    match term {
        Term::Tuple(t) if t.elements.len() == 2 => match &t.elements[0] {
            Term::Atom(a) => Some((a.name.as_str(), &t.elements[1])),
            _ => None,
        },
        _ => None,
    }
}

fn atom_of(term: &Term) -> Option<&str> {
    match term {
        Term::Atom(a) => Some(&a.name),
        _ => None,
    }
}

/// A string (`"..."`, a list of characters) or a binary, as a path.
fn text_of(term: &Term) -> Option<String> {
    match term {
        Term::Binary(b) => String::from_utf8(b.bytes.clone()).ok(),
        Term::ByteList(b) => String::from_utf8(b.bytes.clone()).ok(),
        Term::List(l) => l
            .elements
            .iter()
            .map(|e| match e {
                Term::FixInteger(i) => u32::try_from(i.value).ok().and_then(char::from_u32),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn parse_side(term: &Term) -> Result<TlsSide, TlsError> {
    let mut side = TlsSide::default();
    let path = |v: &Term, k: &str| {
        text_of(v)
            .map(PathBuf::from)
            .ok_or_else(|| TlsError::Optfile(format!("{k} must be a string")))
    };
    for option in list_items(term).ok_or_else(|| bad("a side's options must be a list"))? {
        let (key, value) = pair(option).ok_or_else(|| bad("options are {Key, Value}"))?;
        match key {
            "certfile" => side.certfile = Some(path(value, key)?),
            "keyfile" => side.keyfile = Some(path(value, key)?),
            "cacertfile" => side.cacertfile = Some(path(value, key)?),
            "verify" => {
                side.verify = Some(match atom_of(value) {
                    Some("verify_peer") => Verify::Peer,
                    Some("verify_none") => Verify::None,
                    _ => return Err(bad("verify is verify_peer or verify_none")),
                })
            }
            "fail_if_no_peer_cert" => {
                side.fail_if_no_peer_cert = match atom_of(value) {
                    Some("true") => true,
                    Some("false") => false,
                    _ => return Err(bad("fail_if_no_peer_cert is true or false")),
                }
            }
            "versions" => {
                side.versions = list_items(value)
                    .ok_or_else(|| bad("versions is a list of atoms"))?
                    .iter()
                    .map(|v| atom_of(v).map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("versions is a list of atoms"))?;
            }
            other => tracing::warn!(option = other, "ssl_dist option not supported; ignored"),
        }
    }
    Ok(side)
}

/// ring: it builds with a C compiler only (aws-lc-rs needs cmake). Its
/// lack of post-quantum key exchange is why rustls deprecates it; OTP 25
/// and 27 offer none either.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(side: &TlsSide) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    if side.versions.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    side.versions
        .iter()
        .map(|v| match v.as_str() {
            "tlsv1.3" => Ok(&rustls::version::TLS13),
            "tlsv1.2" => Ok(&rustls::version::TLS12),
            other => Err(TlsError::Optfile(format!(
                "TLS version {other:?} not supported (tlsv1.2, tlsv1.3)"
            ))),
        })
        .collect()
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        what: e.to_string(),
    }
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

fn roots(side: &TlsSide, who: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let path = side.cacertfile.as_deref().ok_or_else(|| {
        TlsError::Optfile(format!(
            "{who} side: verify_peer needs a cacertfile (or {{verify, verify_none}})"
        ))
    })?;
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert)?;
    }
    Ok(Arc::new(store))
}

/// Our chain and key, if `certfile` is set.
fn identity(
    side: &TlsSide,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
    let Some(cert) = side.certfile.as_deref() else {
        return Ok(None);
    };
    let key_path = side.keyfile.as_deref().unwrap_or(cert);
    Ok(Some((certs(cert)?, key(key_path)?)))
}

fn server_config(side: &TlsSide) -> Result<ServerConfig, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(&versions(side)?)?;
    let builder = match side.verify.unwrap_or(Verify::None) {
        Verify::None => builder.with_no_client_auth(),
        Verify::Peer => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots(side, "server")?, provider());
            let verifier = if side.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            )
        }
    };
    let (chain, key) = identity(side)?.ok_or_else(|| bad("server side needs a certfile"))?;
    Ok(builder.with_single_cert(chain, key)?)
}

fn client_config(side: &TlsSide) -> Result<ClientConfig, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_protocol_versions(&versions(side)?)?;
    let builder = match side.verify.unwrap_or(Verify::Peer) {
        Verify::Peer => builder.with_root_certificates(roots(side, "client")?),
        Verify::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider()))),
    };
    Ok(match identity(side)? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    })
}

/// The server name a dialed node's certificate must carry: the host part
/// of its node name, an IP address or a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| {
        TlsError::Verifier(format!("{host:?} is neither an IP address nor a DNS name"))
    })
}

/// `{verify, verify_none}` on the client side: any certificate will do,
/// but the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ssl_dist_conf_is_read() {
        let text = r#"
            % comment
            [{server, [{certfile, "/c/node.pem"}, {keyfile, "/c/node.key"},
                       {cacertfile, "/c/ca.pem"}, {verify, verify_peer},
                       {fail_if_no_peer_cert, true}, {secure_renegotiate, true}]},
             {client, [{certfile, "/c/node.pem"}, {cacertfile, <<"/c/ca%.pem">>},
                       {verify, verify_none}, {versions, ['tlsv1.2']}]}].
        "#;
        let o = TlsOptions::parse(text).unwrap();
        assert_eq!(o.server.certfile.as_deref(), Some(Path::new("/c/node.pem")));
        assert_eq!(o.server.keyfile.as_deref(), Some(Path::new("/c/node.key")));
        assert_eq!(o.server.verify, Some(Verify::Peer));
        assert!(o.server.fail_if_no_peer_cert);
        assert_eq!(
            o.client.cacertfile.as_deref(),
            Some(Path::new("/c/ca%.pem"))
        );
        assert_eq!(o.client.verify, Some(Verify::None));
        assert_eq!(o.client.versions, vec!["tlsv1.2".to_owned()]);
        assert_eq!(o.client.keyfile, None);
    }

    #[test]
    fn malformed_optfiles_are_typed_errors() {
        for text in [
            "",
            "ok.",
            "[{server, ok}].",
            "[{both, []}].",
            "[{server, [{verify, maybe}]}].",
            "[{server, [{certfile, 12}]}].",
            "[{client, [{versions, [tlsv9]}]}].",
        ] {
            let parsed = TlsOptions::parse(text).and_then(|o| o.build().map(|_| ()));
            assert!(parsed.is_err(), "{text}");
        }
    }

    #[test]
    fn verify_peer_needs_a_ca() {
        let o = TlsOptions::parse("[{client, [{verify, verify_peer}]}].").unwrap();
        assert!(matches!(
            client_config(&o.client),
            Err(TlsError::Optfile(_))
        ));
    }

    #[test]
    fn node_hosts_become_server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("not a host").is_err());
    }
}
