//! TLS for the HTTP listener: the rustls server configuration from the `[http]` PEM files (the
//! handshakes run per connection in [`crate::listener`]).

use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls;

use crate::config::TlsFiles;

/// A rustls server configuration from the PEM files (`keys` name the config keys in errors:
/// certificate, key, client CA).
///
/// # Errors
/// Unreadable files, no certificate or key in them, a key that does not match.
pub fn server_config(files: &TlsFiles, keys: [&str; 3]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key, ca) = crate::read_tls_pem(files, keys)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: {}: not a PEM certificate chain", keys[0], files.cert_file.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{}: {}: no certificate in it", keys[0], files.cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .with_context(|| format!("{}: {}: no PEM private key in it", keys[1], files.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca) {
                let cert = cert.with_context(|| format!("{}: not a PEM CA bundle", keys[2]))?;
                roots.add(cert).with_context(|| format!("{}: certificate not usable as a CA", keys[2]))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("{}: client certificate verifier", keys[2]))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("{} and {}: certificate and key do not match", keys[0], keys[1]))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
