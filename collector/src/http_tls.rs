//! The HTTP listener for `axum::serve`, plain or TLS (rustls): handshakes run concurrently,
//! bounded in number and time, so a slow client cannot hold up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use crate::config::TlsFiles;

/// Handshakes in progress at most; connections beyond are closed at once.
const MAX_HANDSHAKES: usize = 256;
/// Time a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Accepts TCP connections and, with TLS, completes their handshakes.
#[derive(Debug)]
pub struct HttpListener {
    tcp: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl HttpListener {
    /// Plain HTTP when `tls` is `None`.
    pub fn new(tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        HttpListener { tcp, tls, handshakes: JoinSet::new() }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %err, "accepting an HTTP connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(config) = &self.tls else {
                        return (Either::Left(stream), peer);
                    };
                    if self.handshakes.len() >= MAX_HANDSHAKES {
                        tracing::debug!(%peer, "too many TLS handshakes in progress; connection closed");
                        continue;
                    }
                    let acceptor = TlsAcceptor::from(Arc::clone(config));
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => Some((tls, peer)),
                            Ok(Err(err)) => {
                                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some((tls, peer))) = done {
                        return (Either::Right(tls), peer);
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
