//! TLS distribution in tests: a PKI per test under the repo's target
//! directory (visible inside the erl27 chroot), and the `erl` arguments
//! of a node that speaks `inet_tls`.

#![allow(dead_code)]

pub mod certs;

pub use certs::{Pki, Side};
use std::path::Path;

/// A fresh PKI in `target/tls_test/{prefix}_…`.
pub fn pki(prefix: &str) -> Pki {
    let dir = super::common::repo_root()
        .join("target")
        .join("tls_test")
        .join(super::common::unique_name(prefix));
    certs::generate(&dir).expect("generate test certificates")
}

/// `erl` arguments for TLS distribution with `optfile`.
pub fn erl_args(optfile: &Path) -> Vec<String> {
    vec![
        "-proto_dist".into(),
        "inet_tls".into(),
        "-ssl_dist_optfile".into(),
        optfile.display().to_string(),
    ]
}

/// The same as `&str`s, for `BeamNode::start`.
pub fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The Rust node's TLS config from an optfile (read as the binary does).
pub fn rust_tls(optfile: &Path) -> erl_quorum::node::TlsConfig {
    erl_quorum::node::TlsOptions::from_optfile(optfile)
        .expect("read the optfile")
        .build()
        .expect("build the TLS config")
}
