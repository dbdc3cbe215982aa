//! Issue #13 item 8: the HTTP listener's header timeout and connection cap; gRPC ingest keeps
//! its descriptors.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use b24watch_e2e::{Collector, enroll, eventually, http_get, load_batch, metric, now_ms, patience, send};

/// Reads until the server closes the connection (or the bound passes): what it sent, and
/// whether it closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    stream.set_read_timeout(Some(within)).expect("timeout");
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

#[test]
fn half_sent_request_is_closed_after_the_header_timeout_and_others_are_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"), "");
    let mut slow = TcpStream::connect(collector.http).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: collector\r\n").expect("half a request");
    // Default collector.http_header_timeout_secs = 10.
    let (answer, closed) = read_until_closed(&mut slow, patience(Duration::from_secs(40)));
    assert!(closed, "a request whose headers never end must be closed, got {answer:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(collector.metrics().contains("b24watch_collector_ready 1"), "others are served");
}

#[test]
fn with_the_http_connection_cap_reached_new_connections_are_refused_and_agents_still_deliver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = std::fs::read_to_string(enroll(&data, "capped")).expect("token");
    let collector = Collector::start(&data, "");
    // Default collector.http_max_connections = 128; connections that send nothing are held
    // until the header timeout (10 s).
    let held: Vec<TcpStream> = (0..128).map(|_| TcpStream::connect(collector.http).expect("connect")).collect();
    let refused = |what: &str| {
        let mut extra = TcpStream::connect(collector.http).expect("the kernel still accepts");
        let _ = extra.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: collector\r\n\r\n");
        let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(5));
        assert!(closed && answer.starts_with("HTTP/1.1 503"), "{what}: past the cap, got {answer:?} closed={closed}");
    };
    refused("before ingest");
    let acks = send(&collector.grpc_url(), token.trim(), vec![load_batch("capped", 1, 1, &[now_ms()])])
        .expect("gRPC ingest works while HTTP is at its cap");
    assert_eq!(acks[0].stored_points, 1);
    refused("after ingest");
    drop(held);
    let body = eventually("/metrics once the held connections are closed", patience(Duration::from_secs(10)), || {
        http_get(collector.http, "/metrics").ok().filter(|(status, _)| *status == 200).map(|(_, body)| body)
    });
    let n = metric(&body, "b24watch_collector_http_connections_refused_total", &[]).expect("refused counter");
    assert!(n >= 2.0, "{n}");
}
