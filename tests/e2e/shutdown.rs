//! Shutdown: SIGTERM stops both binaries promptly, and acked data survives a restart.

use std::time::Duration;

use b24watch_e2e::{Agent, Collector, enroll};

#[test]
fn sigterm_stops_both_within_5s_and_acked_data_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "box-02");
    let collector = Collector::start(&data, "");
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    collector.wait_for_load_points("box-02", 3);
    let (status, took) = agent.process.terminate(Duration::from_secs(5));
    assert!(status.success(), "agent exit status {status:?}");
    assert!(took < Duration::from_secs(5), "agent took {took:?} to stop");
    let stored = collector.points("box-02", "load1");
    let (grpc, http) = (collector.grpc, collector.http);
    let (status, took) = collector.process.terminate(Duration::from_secs(5));
    assert!(status.success(), "collector exit status {status:?}");
    assert!(took < Duration::from_secs(5), "collector took {took:?} to stop");
    let restarted = Collector::start_on(&data, grpc, http, "");
    assert_eq!(restarted.points("box-02", "load1"), stored);
}
