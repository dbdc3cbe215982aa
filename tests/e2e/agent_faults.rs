//! Issue #5: the agent stopped, killed and given a damaged spool (RELIABILITY.md T08-T10).

use std::time::Duration;

use b24watch_e2e::{Agent, Collector, enroll, eventually, integrity_check, metric, now_ms};

/// T08: SIGTERM during a collector outage; everything spooled is delivered once after both return.
#[test]
fn agent_stopped_during_an_outage_delivers_its_spool_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "t08");
    let collector = Collector::start(&data, "");
    let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    collector.wait_for_load_points("t08", 1);
    let (grpc, http) = (collector.grpc, collector.http);
    collector.process.kill();
    let down_at = now_ms();
    std::thread::sleep(Duration::from_secs(4));
    let (status, took) = agent.process.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "agent took {took:?} to stop during an outage");
    let stopped_at = now_ms();
    let collector = Collector::start_on(&data, grpc, http, "");
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    eventually("spool delivered", Duration::from_secs(45), || {
        let ts = collector.unique_load_ts("t08");
        let body = collector.metrics();
        let pending = metric(&body, "b24watch_agent_spool_pending_batches", &[("host", "t08")])?;
        (pending == 0.0 && ts.iter().any(|t| *t > stopped_at)).then_some(())
    });
    let ts = collector.unique_load_ts("t08");
    let during = ts.iter().filter(|t| (down_at + 500..stopped_at - 500).contains(*t)).count();
    assert!(during >= 2, "samples spooled before SIGTERM were not delivered: {ts:?}");
}

/// T09 and T10: SIGKILL at random points never corrupts the spool or duplicates data, and a
/// damaged spool is moved aside without a crash loop.
#[test]
fn agent_killed_repeatedly_keeps_a_sound_spool_and_survives_a_damaged_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let token = enroll(&data, "t09");
    let collector = Collector::start(&data, "");
    let spool = dir.path().join("agent-state").join("spool.db");
    let mut seed = now_ms() as u64 | 1;
    for _ in 0..8 {
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 1700));
        agent.process.kill();
        if spool.exists() {
            assert_eq!(integrity_check(&spool), "ok");
        }
    }
    let _ = collector.unique_load_ts("t09");
    // Damage the spool: the agent moves it aside and keeps collecting.
    std::fs::write(&spool, vec![0x42; 8192]).expect("damage spool");
    let _ = std::fs::remove_file(spool.with_extension("db-wal"));
    let restarted_at = now_ms();
    let mut agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
    eventually("delivery after a damaged spool", Duration::from_secs(10), || {
        collector.points("t09", "load1").iter().any(|p| p.1 > restarted_at).then_some(())
    });
    assert!(agent.process.exited().is_none(), "agent exited");
    assert!(agent.process.log_text().contains("spool was damaged"), "{}", agent.process.log_text());
    let _ = collector.unique_load_ts("t09");
}
