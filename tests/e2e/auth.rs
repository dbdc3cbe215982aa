//! Authentication: bad, foreign and revoked tokens are refused and store nothing.

use std::time::Duration;

use b24watch_e2e::{Agent, Collector, enroll, eventually, load_batch, metric, now_ms, send};
use tonic::Code;

#[test]
fn wrong_token_and_foreign_agent_id_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token_a = std::fs::read_to_string(enroll(&data, "agent-a")).expect("token");
    let token_b = std::fs::read_to_string(enroll(&data, "agent-b")).expect("token");
    let collector = Collector::start(&data, "");
    let url = collector.grpc_url();
    let ts = now_ms();

    let wrong_secret = format!("agent-a.{}", "0".repeat(64));
    let err = send(&url, &wrong_secret, vec![load_batch("agent-a", 1, 1, &[ts])]).expect_err("bad secret");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let unknown = format!("nobody.{}", token_a.trim().rsplit_once('.').expect("token").1);
    let err = send(&url, &unknown, vec![load_batch("nobody", 1, 1, &[ts])]).expect_err("unknown agent");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = send(&url, "garbage", vec![load_batch("agent-a", 1, 1, &[ts])]).expect_err("malformed");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // A's valid credential with a payload claiming to be B.
    let err = send(&url, token_a.trim(), vec![load_batch("agent-b", 1, 1, &[ts])]).expect_err("impersonation");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    assert!(collector.points("agent-a", "load1").is_empty());
    assert!(collector.points("agent-b", "load1").is_empty());
    let body = collector.metrics();
    assert_eq!(metric(&body, "b24watch_collector_auth_failures_total", &[("reason", "bad_secret")]), Some(1.0));
    assert_eq!(metric(&body, "b24watch_collector_auth_failures_total", &[("reason", "unknown_agent")]), Some(1.0));
    assert_eq!(metric(&body, "b24watch_collector_auth_failures_total", &[("reason", "malformed")]), Some(1.0));
    assert_eq!(metric(&body, "b24watch_collector_auth_failures_total", &[("reason", "agent_mismatch")]), Some(1.0));
    assert_eq!(metric(&body, "b24watch_collector_points_stored_total", &[]), Some(0.0));

    // B's own credential still works.
    let acks = send(&url, token_b.trim(), vec![load_batch("agent-b", 1, 1, &[ts])]).expect("b delivers");
    assert_eq!(acks[0].stored_points, 1);
}

#[test]
fn revoked_token_is_refused_without_restart_and_its_open_stream_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token_path = enroll(&data, "gone");
    let token = std::fs::read_to_string(&token_path).expect("token");
    let collector = Collector::start(&data, "");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token_path, 1, "");
    collector.wait_for_load_points("gone", 2);
    let out = b24watch_e2e::collector_cmd(&data, &["revoke", "gone"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err =
        send(&collector.grpc_url(), token.trim(), vec![load_batch("gone", 1, 1, &[now_ms()])]).expect_err("revoked");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // The agent's already-open stream is cut within the refresh interval (10 s).
    eventually("the open stream stops delivering", Duration::from_secs(20), || {
        let before = collector.points("gone", "load1").len();
        std::thread::sleep(Duration::from_secs(3));
        (collector.points("gone", "load1").len() == before).then_some(())
    });
    let body = collector.metrics();
    assert!(
        metric(&body, "b24watch_collector_auth_failures_total", &[("reason", "revoked")]).is_some_and(|n| n >= 2.0)
    );
    assert!(collector.points("gone", "load1").iter().all(|p| p.0 != "probe=\"e2e\""), "batch after revocation stored");
}
