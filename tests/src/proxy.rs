//! A TCP proxy on loopback that a test can cut and restore, to simulate a network outage
//! between an agent and the collector without stopping either.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The proxy. Dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct Proxy {
    /// Where agents connect.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a free loopback port to `upstream`.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        {
            let (open, stop, conns) = (Arc::clone(&open), Arc::clone(&stop), Arc::clone(&conns));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    if !open.load(Ordering::Relaxed) {
                        drop(client); // refused while cut
                        continue;
                    }
                    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else { continue };
                    for stream in [&client, &server] {
                        if let Ok(clone) = stream.try_clone() {
                            conns.lock().expect("conns").push(clone);
                        }
                    }
                    pipe(client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                    pipe(server, client);
                }
            });
        }
        Proxy { addr, open, stop, conns }
    }

    /// Cuts the link: open connections are closed and new ones refused.
    pub fn cut(&self) {
        self.open.store(false, Ordering::Relaxed);
        for conn in self.conns.lock().expect("conns").drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.open.store(true, Ordering::Relaxed);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        let _ = TcpStream::connect(self.addr);
    }
}
