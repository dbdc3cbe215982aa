//! End-to-end tests: the real `b24watch-collector` and `b24watch-agent` binaries over loopback.
//!
//! Run `cargo build --workspace --bins` first (`make test` does).

mod slice {
    //! Issue #2: the first vertical slice, agent → gRPC → collector → SQLite → /metrics.

    use std::collections::BTreeSet;
    use std::time::Duration;

    use b24watch_e2e::{Agent, Collector, enroll, eventually, metric, promtool_check_metrics};
    use b24watch_proto::v1::ingest_client::IngestClient;
    use b24watch_proto::v1::{Ack, Batch, Label, Series};
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::Code;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
    }

    /// Opens one stream, sends `batches`, closes the sending side and collects the acks.
    fn send(url: &str, token: &str, batches: Vec<Batch>) -> Result<Vec<Ack>, tonic::Status> {
        block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
                .expect("url")
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
            let mut client = IngestClient::new(channel);
            let (tx, rx) = tokio::sync::mpsc::channel(batches.len().max(1));
            for batch in batches {
                tx.send(batch).await.expect("queue");
            }
            drop(tx);
            let mut request = tonic::Request::new(ReceiverStream::new(rx));
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
            let mut acks = client.stream(request).await?.into_inner();
            let mut out = Vec::new();
            while let Some(ack) =
                tokio::time::timeout(Duration::from_secs(10), acks.message()).await.expect("ack in time")?
            {
                out.push(ack);
            }
            Ok(out)
        })
    }

    fn load_batch(agent_id: &str, epoch: u64, seq: u64, ts: &[i64]) -> Batch {
        Batch {
            spool_epoch: epoch,
            seq,
            agent_id: agent_id.to_owned(),
            series: vec![Series {
                name: "load1".into(),
                kind: 1,
                labels: vec![Label { name: "probe".into(), value: "e2e".into() }],
                timestamps_unix_ms: ts.to_vec(),
                values: ts.iter().map(|t| *t as f64 / 1000.0).collect(),
            }],
            ..Batch::default()
        }
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
    }

    #[test]
    fn local_agent_appears_in_metrics_with_host_series_and_passes_promtool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "box-01");
        let collector = Collector::start(&data, &[]);
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &[]);
        let host = [("host", "box-01")];
        let body = eventually("host series in /metrics", Duration::from_secs(20), || {
            let body = collector.metrics();
            metric(&body, "b24watch_cpu_usage_ratio", &host).map(|_| body)
        });
        assert_eq!(metric(&body, "b24watch_agent_up", &host), Some(1.0), "{body}");
        assert!(metric(&body, "b24watch_agent_last_seen_timestamp_seconds", &host).is_some_and(|t| t > 1.7e9));
        let usage = metric(&body, "b24watch_cpu_usage_ratio", &host).expect("cpu usage");
        assert!((0.0..=1.0).contains(&usage), "cpu usage {usage}");
        assert!(metric(&body, "b24watch_load1", &host).is_some(), "{body}");
        let total = metric(&body, "b24watch_memory_total_bytes", &host).expect("memory total");
        let available = metric(&body, "b24watch_memory_available_bytes", &host).expect("memory available");
        assert!(total > 0.0 && available <= total, "{available} <= {total}");
        let root = [("host", "box-01"), ("mountpoint", "/")];
        let size = metric(&body, "b24watch_filesystem_size_bytes", &root).expect("root filesystem size");
        let avail = metric(&body, "b24watch_filesystem_avail_bytes", &root).expect("root filesystem avail");
        assert!(size > 0.0 && avail <= size);
        assert!(metric(&body, "b24watch_collector_points_stored_total", &[]).is_some_and(|n| n > 0.0));
        promtool_check_metrics(&body).unwrap_or_else(|problems| panic!("promtool check metrics:\n{problems}\n{body}"));
    }

    #[test]
    fn batch_resent_after_a_lost_ack_is_stored_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = std::fs::read_to_string(enroll(&data, "dedup")).expect("token");
        let collector = Collector::start(&data, &[]);
        let ts = now_ms();
        let batch = load_batch("dedup", 42, 1, &[ts - 2000, ts - 1000, ts]);
        let first = send(&collector.grpc_url(), token.trim(), vec![batch.clone()]).expect("first delivery");
        assert_eq!((first[0].seq, first[0].duplicate, first[0].stored_points), (1, false, 3));
        // The agent never saw that ack (connection cut): it resends on a new connection.
        let again = send(&collector.grpc_url(), token.trim(), vec![batch]).expect("resend");
        assert_eq!((again[0].seq, again[0].duplicate, again[0].stored_points), (1, true, 0));
        let points = collector.points("dedup", "load1");
        assert_eq!(points.len(), 3, "{points:?}");
        let body = collector.metrics();
        assert_eq!(metric(&body, "b24watch_collector_batches_total", &[("result", "duplicate")]), Some(1.0));
        assert_eq!(metric(&body, "b24watch_collector_points_stored_total", &[]), Some(3.0));
        // The same key with other content is refused and changes nothing (RELIABILITY.md T30).
        let conflicting = load_batch("dedup", 42, 1, &[ts - 5000]);
        let err = send(&collector.grpc_url(), token.trim(), vec![conflicting]).expect_err("conflict");
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        assert_eq!(collector.points("dedup", "load1").len(), 3);
    }

    #[test]
    fn wrong_token_and_foreign_agent_id_are_refused_and_store_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token_a = std::fs::read_to_string(enroll(&data, "agent-a")).expect("token");
        let token_b = std::fs::read_to_string(enroll(&data, "agent-b")).expect("token");
        let collector = Collector::start(&data, &[]);
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
    fn revoked_token_is_refused_without_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = std::fs::read_to_string(enroll(&data, "gone")).expect("token");
        let collector = Collector::start(&data, &[]);
        let out = b24watch_e2e::collector_cmd(&data, &["revoke", "gone"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let err = send(&collector.grpc_url(), token.trim(), vec![load_batch("gone", 1, 1, &[now_ms()])])
            .expect_err("revoked");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(collector.points("gone", "load1").is_empty());
    }

    #[test]
    fn sigterm_stops_both_within_5s_and_acked_data_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "box-02");
        let collector = Collector::start(&data, &[]);
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &[]);
        eventually("three load samples stored", Duration::from_secs(20), || {
            (collector.points("box-02", "load1").len() >= 3).then_some(())
        });
        let (status, took) = agent.process.terminate(Duration::from_secs(5));
        assert!(status.success(), "agent exit status {status:?}");
        assert!(took < Duration::from_secs(5), "agent took {took:?} to stop");
        let stored = collector.points("box-02", "load1");
        let (grpc, http) = (collector.grpc, collector.http);
        let (status, took) = collector.process.terminate(Duration::from_secs(5));
        assert!(status.success(), "collector exit status {status:?}");
        assert!(took < Duration::from_secs(5), "collector took {took:?} to stop");
        let restarted = Collector::start_on(&data, grpc, http, &[]);
        assert_eq!(restarted.points("box-02", "load1"), stored);
    }

    #[test]
    fn agent_spools_while_collector_is_down_and_delivers_each_batch_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "box-03");
        let collector = Collector::start(&data, &[]);
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &[]);
        eventually("first samples stored", Duration::from_secs(20), || {
            (!collector.points("box-03", "load1").is_empty()).then_some(())
        });
        let (grpc, http) = (collector.grpc, collector.http);
        let down_at = now_ms();
        collector.process.kill();
        std::thread::sleep(Duration::from_secs(5));
        let up_at = now_ms();
        let collector = Collector::start_on(&data, grpc, http, &[]);
        let host = [("host", "box-03")];
        eventually("spool drained", Duration::from_secs(45), || {
            let body = collector.metrics();
            let pending = metric(&body, "b24watch_agent_spool_pending_batches", &host)?;
            (pending == 0.0 && collector.points("box-03", "load1").iter().any(|p| p.1 > up_at)).then_some(())
        });
        drop(agent);
        let points = collector.points("box-03", "load1");
        let unique: BTreeSet<i64> = points.iter().map(|p| p.1).collect();
        assert_eq!(unique.len(), points.len(), "duplicate timestamps: {points:?}");
        let during: Vec<i64> =
            unique.iter().copied().filter(|ts| (down_at + 1000..up_at - 1000).contains(ts)).collect();
        assert!(during.len() >= 2, "samples taken while the collector was down were not delivered: {points:?}");
        // One sample per second: no holes larger than two intervals anywhere.
        let holes: Vec<(i64, i64)> =
            unique.iter().zip(unique.iter().skip(1)).map(|(a, b)| (*a, *b)).filter(|(a, b)| b - a > 2500).collect();
        assert!(holes.is_empty(), "gaps in delivered samples: {holes:?}");
    }

    #[test]
    fn bad_config_exits_78_with_the_key_and_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "[agent]\ninterval_secs = 0\n").expect("write");
        let out = std::process::Command::new(b24watch_e2e::bin("b24watch-agent"))
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .expect("run agent");
        assert_eq!(out.status.code(), Some(78));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("agent.interval_secs") && stderr.contains(&path.display().to_string()), "{stderr}");

        let cpath = dir.path().join("collector.toml");
        std::fs::write(&cpath, "[collector]\nhttp_listen = \"nowhere\"\nbogus = 1\n").expect("write");
        let out = std::process::Command::new(b24watch_e2e::bin("b24watch-collector"))
            .arg("--config")
            .arg(&cpath)
            .arg("--check-config")
            .output()
            .expect("run collector");
        assert_eq!(out.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    }

    #[test]
    fn printed_default_configs_are_accepted_by_check_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (binary, file) in [("b24watch-agent", "agent.toml"), ("b24watch-collector", "collector.toml")] {
            let printed = std::process::Command::new(b24watch_e2e::bin(binary))
                .arg("--print-default-config")
                .output()
                .expect("print default config");
            assert!(printed.status.success());
            let path = dir.path().join(file);
            std::fs::write(&path, &printed.stdout).expect("write");
            let token = dir.path().join("token");
            std::fs::write(&token, "box.0123").expect("write token");
            let out = std::process::Command::new(b24watch_e2e::bin(binary))
                .arg("--config")
                .arg(&path)
                .args(if binary == "b24watch-agent" {
                    vec!["--token-file".to_owned(), token.display().to_string()]
                } else {
                    vec![]
                })
                .arg("--check-config")
                .output()
                .expect("check config");
            assert!(out.status.success(), "{binary}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
