//! A stand-in portal for probe tests: an HTTP/1.1 server on loopback, optionally behind TLS,
//! whose status code and body the test changes while it runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running stand-in portal. Stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct Portal {
    /// Listening address.
    pub addr: SocketAddr,
    /// Status code of the next answers.
    pub status: Arc<AtomicU16>,
    /// Body of the next answers.
    pub body: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Portal {
    /// Starts serving on a free loopback port; with `tls`, a certificate chain and key (DER).
    ///
    /// # Panics
    /// When the port cannot be bound or the TLS material is unusable.
    pub fn start(tls: Option<(Vec<Vec<u8>>, Vec<u8>)>) -> Portal {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind portal");
        let addr = listener.local_addr().expect("portal addr");
        let status = Arc::new(AtomicU16::new(200));
        let body = Arc::new(Mutex::new(String::from("<html><title>Bitrix24</title></html>")));
        let stop = Arc::new(AtomicBool::new(false));
        let config = tls.map(|(chain, key)| {
            let chain = chain.into_iter().map(rustls::pki_types::CertificateDer::from).collect();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.into());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Arc::new(
                rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("protocol versions")
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .expect("server certificate"),
            )
        });
        let thread = {
            let (status, body, stop) = (Arc::clone(&status), Arc::clone(&body), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut tcp) = conn else { continue };
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                    let answer = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n{}",
                        status.load(Ordering::Relaxed),
                        body.lock().expect("body lock")
                    );
                    match &config {
                        None => serve(&mut tcp, &answer),
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else { continue };
                            let mut stream = rustls::StreamOwned::new(conn, tcp);
                            serve(&mut stream, &answer);
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                        }
                    }
                }
            })
        };
        Portal { addr, status, body, stop, thread: Some(thread) }
    }

    /// Sets the status code of the next answers.
    pub fn set_status(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }
}

/// Reads the request head and writes `answer`.
fn serve(stream: &mut (impl Read + Write), answer: &str) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.write_all(answer.as_bytes());
    let _ = stream.flush();
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
