//! The HTTP listener in-process with small limits: a body sent too slowly gets 408, a kept-alive connection left idle is closed, the cap answers 503.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use b24watch_collector::config::HttpLimits;
use b24watch_collector::listener;
use b24watch_collector::metrics::Metrics;
use tokio_util::sync::CancellationToken;

fn start(limits: HttpLimits) -> (SocketAddr, tokio::runtime::Runtime, CancellationToken) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let shutdown = CancellationToken::new();
    let app = Router::new()
        .route("/", get(|| async { "ok\n" }))
        .route("/echo", post(|body: String| async move { body }))
        .layer(axum::middleware::from_fn(listener::bounded_body));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(listener::serve(listener, None, app, limits, Arc::new(Metrics::default()), shutdown.clone()));
    (addr, runtime, shutdown)
}

/// Everything the server sends until it closes (or 30 s pass: then `closed` is false).
fn read_all(stream: &mut TcpStream) -> (String, bool) {
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

const LIMITS: HttpLimits =
    HttpLimits { max_connections: 2, header_timeout: Duration::from_secs(1), idle_timeout: Duration::from_secs(1) };

#[test]
fn a_body_that_stops_halfway_gets_408_and_the_connection_closes() {
    let (addr, _rt, _stop) = start(LIMITS);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten..").expect("write");
    let (answer, closed) = read_all(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(closed, "{answer:?}");
}

#[test]
fn a_kept_alive_connection_left_idle_is_closed_after_answering() {
    let (addr, _rt, _stop) = start(LIMITS);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    let (answer, closed) = read_all(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer:?}");
    assert!(closed, "idle keep-alive connection still open: {answer:?}");
}

#[test]
fn past_the_cap_a_connection_gets_503_and_a_freed_slot_serves_again() {
    let (addr, _rt, _stop) = start(HttpLimits { header_timeout: Duration::from_secs(60), ..LIMITS });
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let mut extra = TcpStream::connect(addr).expect("connect");
    let (answer, closed) = read_all(&mut extra);
    assert!(closed && answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    drop(held);
    let served = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let mut again = TcpStream::connect(addr).expect("connect");
        let _ = again.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        read_all(&mut again).0.starts_with("HTTP/1.1 200")
    });
    assert!(served, "a slot freed by a closed connection serves again");
}
