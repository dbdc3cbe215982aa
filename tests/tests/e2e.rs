//! End-to-end tests: the real `b24watch-collector` and `b24watch-agent` binaries over loopback.
//!
//! Run `cargo build --workspace --bins` first (`make test` does).

mod slice {
    //! Issue #2: the first vertical slice, agent → gRPC → collector → SQLite → /metrics.

    use std::collections::BTreeSet;
    use std::time::Duration;

    use b24watch_e2e::{
        Agent, Collector, enroll, eventually, load_batch, metric, now_ms, promtool_check_metrics, send,
    };
    use tonic::Code;

    #[test]
    fn local_agent_appears_in_metrics_with_host_series_and_passes_promtool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "box-01");
        let collector = Collector::start(&data, "");
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
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

    /// Issue #15: history at a step across hour blocks, from unsealed samples and after a clean
    /// stop sealed them into blocks and rollups; a late batch and a repeated timestamp.
    #[test]
    fn history_steps_agree_before_and_after_sealing_across_hours_and_tiers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = std::fs::read_to_string(enroll(&data, "hist")).expect("token");
        let collector = Collector::start(&data, "");
        let hour = 3_600_000;
        let base = (now_ms() - 5 * hour) / hour * hour;
        // Three hours at 10 s, the middle hour sent last (a backfill) with a repeated timestamp.
        let ts = |h: i64| -> Vec<i64> { (0..360).map(|i| base + h * hour + i * 10_000).collect() };
        let mut late = ts(1);
        late.push(base + hour); // the same timestamp twice in one batch: stored once
        let batches =
            vec![load_batch("hist", 5, 1, &ts(0)), load_batch("hist", 5, 2, &ts(2)), load_batch("hist", 5, 3, &late)];
        send(&collector.grpc_url(), token.trim(), batches).expect("stored");
        let query = |c: &Collector, step: i64| {
            c.api(&format!("/api/v1/hosts/hist/series?name=load1&from={base}&to={}&step={step}", base + 3 * hour - 1))
        };
        // load_batch's value is the timestamp in seconds: min/max/avg per step are known.
        let check = |answer: &serde_json::Value, step: i64, tier: &str| {
            let series = &answer["series"][0];
            assert_eq!(series["tier"], tier, "{answer}");
            let steps = series["steps"].as_array().expect("steps");
            assert_eq!(steps.len() as i64, 3 * hour / step, "{answer}");
            for s in steps {
                let t = s["t"].as_i64().expect("t");
                let last = t + step - 10_000;
                assert_eq!(s["min"].as_f64(), Some(t as f64 / 1000.0));
                assert_eq!(s["max"].as_f64(), Some(last as f64 / 1000.0));
                assert_eq!(s["count"].as_i64(), Some(step / 10_000));
                let avg = s["avg"].as_f64().expect("avg");
                assert!((avg - (t + last) as f64 / 2000.0).abs() < 1e-3, "{s}");
            }
        };
        let before: Vec<_> = [(20_000, "raw"), (300_000, "minute"), (hour, "hour")]
            .iter()
            .map(|(step, tier)| {
                let answer = query(&collector, *step);
                check(&answer, *step, tier);
                answer
            })
            .collect();
        let (grpc, http) = (collector.grpc, collector.http);
        let (status, _) = collector.process.terminate(Duration::from_secs(10));
        assert!(status.success());
        let collector = Collector::start_on(&data, grpc, http, "");
        for ((step, _), want) in [(20_000, "raw"), (300_000, "minute"), (hour, "hour")].iter().zip(&before) {
            assert_eq!(&query(&collector, *step), want, "step {step}: answer changed by sealing");
        }
        let db = rusqlite::Connection::open(data.join("b24watch.db")).expect("open db");
        let (blocks, pending): (i64, i64) = db
            .query_row("SELECT (SELECT SUM(n) FROM sample_block), (SELECT COUNT(*) FROM sample_pending)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("counts");
        assert_eq!((blocks, pending), (3 * 360, 0), "a clean stop seals every sample once");
    }

    #[test]
    fn batch_resent_after_a_lost_ack_is_stored_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = std::fs::read_to_string(enroll(&data, "dedup")).expect("token");
        let collector = Collector::start(&data, "");
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
        let err = send(&collector.grpc_url(), token.trim(), vec![load_batch("gone", 1, 1, &[now_ms()])])
            .expect_err("revoked");
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
        assert!(
            collector.points("gone", "load1").iter().all(|p| p.0 != "probe=\"e2e\""),
            "batch after revocation stored"
        );
    }

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

    #[test]
    fn agent_spools_while_collector_is_down_and_delivers_each_batch_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "box-03");
        let collector = Collector::start(&data, "");
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
        collector.wait_for_load_points("box-03", 1);
        let (grpc, http) = (collector.grpc, collector.http);
        let down_at = now_ms();
        collector.process.kill();
        std::thread::sleep(Duration::from_secs(5));
        let up_at = now_ms();
        let collector = Collector::start_on(&data, grpc, http, "");
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

mod delivery {
    //! Issue #5: delivery under faults and hostile input (RELIABILITY.md rows named per test).

    use std::collections::BTreeSet;
    use std::time::Duration;

    use b24watch_e2e::{
        Agent, Collector, enroll, eventually, integrity_check, load_batch, metric, now_ms, send, send_raw,
    };
    use b24watch_proto::v1::{Batch, RejectReason, Series};
    use prost::Message as _;
    use tonic::Code;

    /// Holes in a 1 s series: consecutive timestamps more than 2.5 s apart.
    fn holes(ts: &BTreeSet<i64>) -> Vec<(i64, i64)> {
        ts.iter().zip(ts.iter().skip(1)).map(|(a, b)| (*a, *b)).filter(|(a, b)| b - a > 2500).collect()
    }

    fn wait_drained(collector: &Collector, host: &str, after_ms: i64, within: Duration) {
        eventually(&format!("{host}: spool drained"), within, || {
            let body = collector.metrics();
            let pending = metric(&body, "b24watch_agent_spool_pending_batches", &[("host", host)])?;
            (pending == 0.0 && collector.points(host, "load1").iter().any(|p| p.1 > after_ms)).then_some(())
        });
    }

    /// T01: collector down 60 s with 1 s sampling; every sample stored exactly once afterwards.
    #[test]
    fn collector_down_60s_every_sample_arrives_exactly_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "t01");
        let collector = Collector::start(&data, "");
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
        collector.wait_for_load_points("t01", 1);
        let (grpc, http) = (collector.grpc, collector.http);
        let down_at = now_ms();
        let (status, _) = collector.process.terminate(Duration::from_secs(5));
        assert!(status.success());
        std::thread::sleep(Duration::from_secs(60));
        let up_at = now_ms();
        let collector = Collector::start_on(&data, grpc, http, "");
        wait_drained(&collector, "t01", up_at, Duration::from_secs(60));
        let ts = collector.unique_load_ts("t01");
        let during = ts.iter().filter(|t| (down_at + 1000..up_at - 1000).contains(*t)).count();
        assert!(during >= 55, "only {during} samples from the 60 s outage arrived");
        assert_eq!(holes(&ts), [], "samples missing");
        assert_eq!(integrity_check(&collector.db_path()), "ok");
    }

    /// T02: an outage longer than the spool bound drops the oldest batches, counted exactly, and
    /// the collector stores a gap record describing them.
    #[test]
    fn outage_past_the_spool_bound_drops_oldest_counted_exactly_with_a_gap_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "t02");
        let collector = Collector::start(&data, "");
        let _agent = Agent::start(
            dir.path(),
            &collector.grpc_url(),
            &token,
            1,
            "[spool]\nmax_batches = 5\nmin_free_bytes = 0\n",
        );
        collector.wait_for_load_points("t02", 1);
        let (grpc, http) = (collector.grpc, collector.http);
        collector.process.kill();
        std::thread::sleep(Duration::from_secs(12));
        let up_at = now_ms();
        let collector = Collector::start_on(&data, grpc, http, "");
        wait_drained(&collector, "t02", up_at, Duration::from_secs(45));
        let gaps = collector.api("/api/v1/hosts/t02/gaps");
        let gaps = gaps.as_array().expect("gap list");
        assert!(!gaps.is_empty(), "no gap record stored");
        let dropped: i64 = gaps.iter().map(|g| g["dropped_batches"].as_i64().expect("count")).sum();
        let body = collector.metrics();
        let counted =
            metric(&body, "b24watch_agent_spool_dropped_batches_total", &[("host", "t02"), ("reason", "full")]);
        assert_eq!(counted, Some(dropped as f64), "agent counter vs gap records");
        // One batch per 1 s tick, one load1 point per batch: the missing ticks are the drops.
        let ts = collector.unique_load_ts("t02");
        let missing: i64 =
            ts.iter().zip(ts.iter().skip(1)).map(|(a, b)| ((b - a) as f64 / 1000.0).round() as i64 - 1).sum();
        assert_eq!(missing, dropped, "holes in the series vs dropped batches; ts={ts:?} gaps={gaps:?}");
        for gap in gaps {
            let (from, to) = (gap["from_ms"].as_i64().expect("from"), gap["to_ms"].as_i64().expect("to"));
            assert!(!ts.iter().any(|t| (from..=to).contains(t)), "a gap [{from}, {to}] overlaps stored points");
        }
    }

    /// T06: the collector killed with SIGKILL at random points under several agents' load.
    #[test]
    fn collector_killed_repeatedly_under_load_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let hosts = ["k1", "k2", "k3"];
        let tokens: Vec<_> = hosts.iter().map(|h| enroll(&data, h)).collect();
        let mut collector = Collector::start(&data, "");
        let _agents: Vec<Agent> = hosts
            .iter()
            .zip(&tokens)
            .map(|(host, token)| {
                let agent_dir = dir.path().join(host);
                std::fs::create_dir_all(&agent_dir).expect("agent dir");
                Agent::start(&agent_dir, &collector.grpc_url(), token, 1, "")
            })
            .collect();
        let mut seed = now_ms() as u64 | 1;
        for round in 0..6 {
            // xorshift: a different kill point every round and every run
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(700 + seed % 2300));
            let (grpc, http) = (collector.grpc, collector.http);
            collector.process.kill();
            assert_eq!(integrity_check(&data.join("b24watch.db")), "ok", "after kill {round}");
            collector = Collector::start_on(&data, grpc, http, "");
        }
        let up_at = now_ms();
        for host in hosts {
            wait_drained(&collector, host, up_at, Duration::from_secs(60));
            let ts = collector.unique_load_ts(host);
            assert_eq!(holes(&ts), [], "{host}: samples lost");
        }
    }

    /// T38: another process holds the database lock longer than the busy timeout.
    #[test]
    fn locked_database_delays_delivery_without_losing_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "t38");
        let collector = Collector::start(&data, "");
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, "");
        collector.wait_for_load_points("t38", 1);
        {
            let conn = rusqlite::Connection::open(collector.db_path()).expect("open db");
            conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
            std::thread::sleep(Duration::from_secs(10));
            conn.execute_batch("COMMIT").expect("unlock");
        }
        let released = now_ms();
        wait_drained(&collector, "t38", released, Duration::from_secs(60));
        let body = collector.metrics();
        assert!(
            metric(&body, "b24watch_collector_batches_total", &[("result", "unavailable")]).is_some_and(|n| n >= 1.0),
            "the lock should have refused at least one batch: {body}"
        );
        let ts = collector.unique_load_ts("t38");
        assert_eq!(holes(&ts), [], "samples lost while the database was locked");
    }

    fn big_batch(agent: &str, seq: u64, n_points: usize) -> Batch {
        let base = now_ms() - 3_600_000;
        let ts: Vec<i64> = (0..n_points as i64).map(|i| base + i).collect();
        let mut batch = load_batch(agent, 9, seq, &ts);
        batch.series[0].name = format!("fill_{seq}");
        // Values without pattern (random mantissas), so the packed samples still fill the bound.
        batch.series[0].values = ts
            .iter()
            .map(|t| {
                let mut x = (*t as u64).wrapping_add(seq).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                x ^= x >> 31;
                f64::from_bits(0x3ff0_0000_0000_0000 | (x.wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 12))
            })
            .collect();
        batch
    }

    /// T13: the database reaches its size bound; batches are refused with UNAVAILABLE and nothing
    /// of them is stored; after space is made the same batch is stored once.
    #[test]
    fn full_database_refuses_batches_until_space_is_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = std::fs::read_to_string(enroll(&data, "t13")).expect("token");
        let collector = Collector::start(&data, "[collector]\nmax_db_bytes = 2097152\n");
        let url = collector.grpc_url();
        let mut refused = None;
        for seq in 1..=40 {
            match send(&url, token.trim(), vec![big_batch("t13", seq, 20_000)]) {
                Ok(acks) => assert_eq!(acks[0].stored_points, 20_000),
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    assert!(status.metadata().get("retry-after-ms").is_some(), "no retry hint: {status:?}");
                    refused = Some(seq);
                    break;
                }
            }
        }
        let refused = refused.expect("a 2 MiB database fills up");
        assert!(collector.points("t13", &format!("fill_{refused}")).is_empty(), "refused batch partly stored");
        let stored_before: usize = (1..refused).map(|seq| collector.points("t13", &format!("fill_{seq}")).len()).sum();
        assert_eq!(stored_before, (refused as usize - 1) * 20_000);
        let (grpc, http) = (collector.grpc, collector.http);
        let (status, _) = collector.process.terminate(Duration::from_secs(5));
        assert!(status.success());
        let collector = Collector::start_on(&data, grpc, http, "");
        let acks =
            send(&collector.grpc_url(), token.trim(), vec![big_batch("t13", refused, 20_000)]).expect("stored now");
        assert!(!acks[0].duplicate);
        assert_eq!(collector.points("t13", &format!("fill_{refused}")).len(), 20_000);
        assert_eq!(integrity_check(&collector.db_path()), "ok");
    }

    /// T33: one agent opening many concurrent streams gets RESOURCE_EXHAUSTED beyond its share,
    /// and other agents keep being served.
    #[test]
    fn stream_flood_from_one_agent_is_capped_and_others_are_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let flood = std::fs::read_to_string(enroll(&data, "flood")).expect("token");
        let good = std::fs::read_to_string(enroll(&data, "calm")).expect("token");
        let collector = Collector::start(&data, "");
        let url = collector.grpc_url();
        let (accepted, refused) = b24watch_e2e::block_on(async {
            let channel =
                tonic::transport::Endpoint::from_shared(url.clone()).expect("url").connect().await.expect("connect");
            let mut held = Vec::new();
            let (mut accepted, mut refused) = (0, 0);
            for _ in 0..20 {
                let mut client = b24watch_proto::v1::ingest_client::IngestClient::new(channel.clone());
                let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(1);
                let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {}", flood.trim()).parse().expect("ascii"));
                match client.stream(request).await {
                    Ok(response) => {
                        accepted += 1;
                        held.push((tx, response));
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                        refused += 1;
                    }
                }
            }
            // While the flood holds its streams, another agent is served.
            let batch = load_batch("calm", 1, 1, &[now_ms()]).encode_to_vec();
            let acks =
                b24watch_e2e::send_raw_async(&url, good.trim(), vec![batch], false).await.expect("calm agent served");
            assert_eq!(acks[0].stored_points, 1);
            (accepted, refused)
        });
        assert_eq!((accepted, refused), (4, 16));
        let body = collector.metrics();
        assert_eq!(metric(&body, "b24watch_collector_streams_refused_total", &[]), Some(16.0));
        // The held streams are gone now: the agent gets its slots back.
        eventually("slots released", Duration::from_secs(10), || {
            send(&url, flood.trim(), vec![load_batch("flood", 1, 1, &[now_ms()])]).ok()
        });
    }

    /// T27, T28, T29, T34: hostile input gets clear status codes or per-item rejections, memory
    /// stays bounded, and other agents keep being served.
    #[test]
    fn hostile_input_is_refused_clearly_and_others_keep_being_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let bad = std::fs::read_to_string(enroll(&data, "hostile")).expect("token");
        let good = std::fs::read_to_string(enroll(&data, "honest")).expect("token");
        let collector = Collector::start(&data, "[limits]\nmax_series_per_agent = 50\n");
        let url = collector.grpc_url();

        // Malformed protobuf: a field 1 varint that never ends.
        let err = send_raw(&url, bad.trim(), vec![vec![0x08, 0xff, 0xff, 0xff]], false).expect_err("malformed");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(!err.message().is_empty());

        // Over the 4 MiB limit.
        let huge = big_batch("hostile", 1, 600_000).encode_to_vec();
        assert!(huge.len() > 4 << 20);
        let err = send_raw(&url, bad.trim(), vec![huge], false).expect_err("too large");
        assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");

        // A gzip bomb: about 100 KiB on the wire, 80 MB once inflated.
        let mut bomb = load_batch("hostile", 1, 2, &[]);
        bomb.series[0].timestamps_unix_ms = vec![0; 5_000_000];
        bomb.series[0].values = vec![0.0; 5_000_000];
        let err = send_raw(&url, bad.trim(), vec![bomb.encode_to_vec()], true).expect_err("bomb");
        assert!(matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted), "{err:?}");
        let peak = collector.peak_rss_kib();
        assert!(peak < 64 * 1024, "collector peak RSS {peak} KiB after a bomb");

        // NaN, Inf and far-future points are rejected one by one; the rest is stored.
        let now = now_ms();
        let mut mixed = load_batch("hostile", 1, 3, &[now - 3000, now - 2000, now - 1000, now + 3_600_000]);
        mixed.series[0].values = vec![1.0, f64::NAN, f64::NEG_INFINITY, 2.0];
        let acks = send(&url, bad.trim(), vec![mixed]).expect("partly stored");
        assert_eq!(acks[0].stored_points, 1);
        let reasons: Vec<(i32, u32)> = acks[0].rejections.iter().map(|r| (r.reason, r.points)).collect();
        assert_eq!(reasons, [(RejectReason::NonFiniteValue as i32, 2), (RejectReason::TooFarInFuture as i32, 1)]);

        // A flood of new series stops at the per-agent limit; known series keep updating.
        let flood = Batch {
            spool_epoch: 1,
            seq: 4,
            agent_id: "hostile".into(),
            series: (0..100)
                .map(|i| Series {
                    name: "flood".into(),
                    kind: 1,
                    labels: vec![b24watch_proto::v1::Label { name: "request_id".into(), value: format!("r{i}") }],
                    timestamps_unix_ms: vec![now],
                    values: vec![1.0],
                })
                .collect(),
            ..Batch::default()
        };
        let acks = send(&url, bad.trim(), vec![flood]).expect("partly stored");
        let limited = acks[0].rejections.iter().filter(|r| r.reason == RejectReason::SeriesLimit as i32).count();
        assert_eq!((acks[0].stored_points as usize, limited), (49, 51), "one series (load1) existed already");
        let acks = send(&url, bad.trim(), vec![load_batch("hostile", 1, 5, &[now])]).expect("known series");
        assert_eq!(acks[0].stored_points, 1);

        // The other agent was never affected.
        let acks = send(&url, good.trim(), vec![load_batch("honest", 1, 1, &[now])]).expect("honest agent");
        assert_eq!(acks[0].stored_points, 1);
        let body = collector.metrics();
        assert_eq!(
            metric(&body, "b24watch_collector_points_rejected_total", &[("reason", "series_limit")]),
            Some(51.0)
        );
        assert_eq!(
            metric(&body, "b24watch_collector_points_rejected_total", &[("reason", "non_finite_value")]),
            Some(2.0)
        );
    }
}

mod tls {
    //! Issue #5: TLS and mutual TLS between agent and collector (RELIABILITY.md T31).

    use std::path::Path;
    use std::time::Duration;

    use b24watch_e2e::{Agent, Collector, enroll, eventually};

    /// Writes a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
    fn write_pki(dir: &Path) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, sans) in
            [("server", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]), ("client", vec!["agent".to_owned()])]
        {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(sans).expect("params").signed_by(&key, &issuer).expect("sign");
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
        }
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
    }

    #[test]
    fn mtls_collector_accepts_agents_with_a_certificate_and_refuses_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).expect("pki dir");
        write_pki(&pki);
        let data = dir.path().join("collector");
        let good_token = enroll(&data, "with-cert");
        let bad_token = enroll(&data, "without-cert");
        let collector = Collector::start(
            &data,
            &format!(
                "[tls]\ncert_file = \"{0}/server.pem\"\nkey_file = \"{0}/server.key\"\nclient_ca_file = \"{0}/ca.pem\"\n",
                pki.display()
            ),
        );
        let url = format!("https://{}", collector.grpc);
        let good_dir = dir.path().join("good");
        let bad_dir = dir.path().join("bad");
        std::fs::create_dir_all(&good_dir).expect("dir");
        std::fs::create_dir_all(&bad_dir).expect("dir");
        let _good = Agent::start(
            &good_dir,
            &url,
            &good_token,
            1,
            &format!(
                "[tls]\nca_file = \"{0}/ca.pem\"\ncert_file = \"{0}/client.pem\"\nkey_file = \"{0}/client.key\"\n",
                pki.display()
            ),
        );
        let bad =
            Agent::start(&bad_dir, &url, &bad_token, 1, &format!("[tls]\nca_file = \"{}/ca.pem\"\n", pki.display()));
        eventually("the agent with a client certificate delivers", Duration::from_secs(20), || {
            (collector.points("with-cert", "load1").len() >= 2).then_some(())
        });
        assert!(collector.points("without-cert", "load1").is_empty(), "an agent without a certificate got data in");
        let log = bad.process.log_text();
        assert!(log.contains("delivery failing"), "the refused agent should say so:\n{log}");
        // Plain HTTP/2 to a TLS listener is refused too.
        let plain = b24watch_e2e::send(
            &format!("http://{}", collector.grpc),
            std::fs::read_to_string(&good_token).expect("token").trim(),
            vec![b24watch_e2e::load_batch("with-cert", 1, 1, &[b24watch_e2e::now_ms()])],
        );
        assert!(plain.is_err(), "plain text accepted by a TLS listener");
    }
}

mod agent_faults {
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
}

mod logs {
    //! Issue #3: error logs reach the collector exactly once through real rotations and kills.

    use std::io::Write as _;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

    /// Agent config tailing `path` with `preset`, reading from the beginning, 1 s ticks.
    fn agent_config(name: &str, path: &Path, preset: &str) -> String {
        format!(
            "[logs]\nread_from = \"beginning\"\n[[logs.file]]\nname = \"{name}\"\npaths = [\"{}\"]\npreset = \"{preset}\"\n",
            path.display()
        )
    }

    /// Appends numbered nginx lines at about `per_sec`, one in ten an error, reopening the path
    /// for every line (as nginx does after USR1), until `stop`. Returns lines written. With
    /// `tagged`, each error line carries its number spelled in letters (`tag=bcd`), which the
    /// fingerprint keeps: every error line is then a group of its own.
    fn writer(path: PathBuf, per_sec: u64, stop: Arc<AtomicBool>, tagged: bool) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            let mut seq = 0u64;
            let pause = Duration::from_micros(1_000_000 / per_sec);
            while !stop.load(Ordering::Relaxed) {
                let line = if seq.is_multiple_of(10) {
                    let tag = if tagged { format!("tag={} ", letters(seq)) } else { String::new() };
                    format!(
                        "2024/05/01 10:00:00 [error] 77#0: {tag}*{seq} upstream timed out seq={seq} while reading upstream\n"
                    )
                } else {
                    format!("2024/05/01 10:00:00 [info] 77#0: *{seq} client closed keepalive seq={seq}\n")
                };
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open log");
                file.write_all(line.as_bytes()).expect("write log");
                seq += 1;
                std::thread::sleep(pause);
            }
            seq
        })
    }

    /// `n` in base 26 with the letters a..z (no digits, so fingerprints keep it).
    fn letters(mut n: u64) -> String {
        let mut out = Vec::new();
        loop {
            out.push(b'a' + (n % 26) as u8);
            n /= 26;
            if n == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).expect("ascii")
    }

    /// Texts of every file of the rotation family of `path` (`app.log`, `app.log.1`, ...).
    fn rotation_family(path: &Path) -> Vec<String> {
        let dir = path.parent().expect("dir");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
        std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&name)))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }

    /// Tags of the tagged error lines present in the rotation family of `path`.
    fn tags_on_disk(path: &Path) -> std::collections::BTreeSet<String> {
        rotation_family(path).iter().flat_map(|text| text.lines().filter_map(tag_of)).collect()
    }

    fn tag_of(line: &str) -> Option<String> {
        let rest = &line[line.find("tag=")? + 4..];
        Some(rest.split_whitespace().next()?.to_owned())
    }

    /// Error lines present in every file of the rotation family: the lines that exist anywhere on
    /// disk, which the agent must deliver exactly once.
    fn error_lines_on_disk(path: &Path) -> u64 {
        rotation_family(path).iter().map(|text| text.matches("[error]").count() as u64).sum()
    }

    /// A collector with `host` enrolled (its token file), and the path of `logs/app.log` (not
    /// created) in a fresh directory.
    fn setup(host: &str) -> (tempfile::TempDir, Collector, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, host);
        let collector = Collector::start(&data, "");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        (dir, collector, token, logs.join("app.log"))
    }

    /// Tags of the tagged error lines of log `app` the collector holds for `host`, asserting that
    /// each arrived once: one group per tag, counted 1.
    fn delivered_once(collector: &Collector, host: &str) -> std::collections::BTreeSet<String> {
        let body = collector.api(&format!("/api/v1/hosts/{host}/errors?since=0&limit=1000"));
        let mut delivered = std::collections::BTreeSet::new();
        for group in body["groups"].as_array().expect("groups").iter().filter(|g| g["log"] == "app") {
            let tag = tag_of(group["example"].as_str().expect("example")).expect("tagged example");
            assert_eq!(group["count"], 1, "error line tag={tag} delivered more than once: {group}");
            assert!(delivered.insert(tag.clone()), "tag={tag} in two groups");
        }
        delivered
    }

    fn delivered_errors(collector: &Collector, host: &str, log: &str) -> u64 {
        let body = collector.api(&format!("/api/v1/hosts/{host}/errors?since=0&limit=1000"));
        body["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter(|g| g["log"] == log)
            .map(|g| g["count"].as_u64().expect("count"))
            .sum()
    }

    fn logrotate(dir: &Path, log: &Path, mode: &str) {
        let conf = dir.join(format!("logrotate-{mode}.conf"));
        std::fs::write(
            &conf,
            format!("{} {{\n    rotate 10\n    {mode}\n    missingok\n    nocompress\n}}\n", log.display()),
        )
        .expect("write logrotate config");
        let logrotate = ["/usr/sbin/logrotate", "/sbin/logrotate"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("logrotate not installed: run `make test`, which installs it");
        let out = std::process::Command::new(logrotate)
            .arg("-f")
            .arg("-s")
            .arg(dir.join("logrotate.state"))
            .arg(&conf)
            .output()
            .expect("run logrotate");
        assert!(out.status.success(), "logrotate {mode}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// T15 and T17: a real logrotate with `create` and then `copytruncate` at 1,000 lines/s.
    #[test]
    fn logrotate_create_and_copytruncate_lose_and_duplicate_no_error_line() {
        let (dir, collector, token, log) = setup("rot");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = writer(log.clone(), 1000, Arc::clone(&stop), true);
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &agent_config("app", &log, "nginx"));
        std::thread::sleep(Duration::from_millis(2500));
        logrotate(dir.path(), &log, "create");
        std::thread::sleep(Duration::from_millis(2500));
        logrotate(dir.path(), &log, "copytruncate");
        std::thread::sleep(Duration::from_millis(2500));
        stop.store(true, Ordering::Relaxed);
        let written = handle.join().expect("writer");
        let on_disk = error_lines_on_disk(&log);
        assert!(
            on_disk >= written / 10 - 2,
            "logrotate itself lost more than its copytruncate window: {on_disk} of {}",
            written / 10
        );
        eventually("every error line on disk delivered", Duration::from_secs(20), || {
            (delivered_errors(&collector, "rot", "app") >= on_disk).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        // Every error line is a group of its own: none may arrive twice, and none that is still on
        // disk may be missing. Lines appended between logrotate's copy and its truncate are in
        // neither file afterwards; the agent may have read them first and rightly delivered them.
        let written_errors = written.div_ceil(10);
        let delivered_tags = delivered_once(&collector, "rot");
        let on_disk_tags = tags_on_disk(&log);
        let missing: Vec<&String> = on_disk_tags.difference(&delivered_tags).collect();
        assert!(missing.is_empty(), "error lines on disk never delivered: {missing:?}");
        let delivered = delivered_tags.len() as u64;
        assert!(delivered <= written_errors, "delivered {delivered} of {written_errors} written");
        let body = collector.metrics();
        let errors =
            metric(&body, "b24watch_log_errors_total", &[("host", "rot"), ("log", "app"), ("severity", "high")]);
        assert_eq!(errors, Some(delivered as f64));
        assert!(
            metric(&body, "b24watch_log_truncations_total", &[("host", "rot"), ("log", "app")])
                .is_some_and(|n| n >= 1.0)
        );
    }

    /// Acceptance 1 and T16 together: logrotate `create` runs while the agent is killed with
    /// SIGKILL again and again, sometimes twice while it is down, with the default
    /// `read_from = "end"`. The history before the first start is not reported; afterwards every
    /// error line on disk arrives exactly once: the rest of a file that rotated out of the pattern
    /// while the agent was down (found again as `app.log.1` or `app.log.2`) and all of every file
    /// that appeared meanwhile.
    #[test]
    fn logrotate_while_the_agent_is_killed_and_down_loses_and_duplicates_no_error_line() {
        let (dir, collector, token, log) = setup("down");
        std::fs::write(&log, "2024/05/01 10:00:00 [error] 1#0: tag=history before the agent\n").expect("history");
        let config =
            format!("[logs]\n[[logs.file]]\nname = \"app\"\npaths = [\"{}\"]\npreset = \"nginx\"\n", log.display());
        let lines_seen =
            || metric(&collector.metrics(), "b24watch_log_lines_total", &[("host", "down"), ("log", "app")]);
        let mut agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        eventually("the agent has read the log once", Duration::from_secs(15), lines_seen);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = writer(log.clone(), 1000, Arc::clone(&stop), true);
        let mut seed = b24watch_e2e::now_ms() as u64 | 1;
        for round in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(600 + seed % 600));
            if round == 2 {
                // A rotation while the agent runs, too.
                logrotate(dir.path(), &log, "create");
                std::thread::sleep(Duration::from_millis(500));
            }
            agent.process.kill();
            std::thread::sleep(Duration::from_millis(300));
            for _ in 0..(1 + round % 2) {
                logrotate(dir.path(), &log, "create");
                std::thread::sleep(Duration::from_millis(300));
            }
            agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let written = handle.join().expect("writer");
        let on_disk = tags_on_disk(&log);
        assert_eq!(on_disk.len() as u64, written.div_ceil(10) + 1, "logrotate create loses nothing on disk");
        assert!(written.div_ceil(10) < 1000, "more error lines than the errors API lists at once");
        eventually("every error line delivered", Duration::from_secs(30), || {
            (delivered_errors(&collector, "down", "app") >= written.div_ceil(10)).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        let delivered = delivered_once(&collector, "down");
        assert!(!delivered.contains("history"), "history before the first start is not reported");
        let missing: Vec<&String> = on_disk.iter().filter(|t| *t != "history" && !delivered.contains(*t)).collect();
        assert!(missing.is_empty(), "{} error lines never delivered: {missing:?}", missing.len());
        drop(agent);
    }

    /// T21: a 10 MiB and a 100 MiB line without newline. Memory stays flat, each is cut and
    /// counted once, the lines after them arrive, and an agent killed while skipping the rest of
    /// the 100 MiB line does not read it again when it comes back.
    #[test]
    fn giant_lines_are_cut_once_in_flat_memory_even_across_a_kill() {
        const MAX_LINE: u64 = 16384;
        let (dir, collector, token, log) = setup("giant");
        let append = |bytes: &[u8]| {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open log");
            file.write_all(bytes).expect("write log");
        };
        let giant = |label: &str, mib: usize| {
            let mut line = format!("2024/05/01 10:00:00 [error] 1#0: giant {label} ").into_bytes();
            line.resize(mib << 20, b'x');
            line
        };
        let groups = |collector: &Collector| -> Vec<(String, u64)> {
            let body = collector.api("/api/v1/hosts/giant/errors?since=0&limit=100");
            let mut groups: Vec<(String, u64)> = body["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .map(|g| {
                    let example = g["example"].as_str().expect("example");
                    (
                        example.split_whitespace().take(6).collect::<Vec<_>>().join(" "),
                        g["count"].as_u64().expect("count"),
                    )
                })
                .collect();
            groups.sort();
            groups
        };
        let long_lines = |collector: &Collector| {
            metric(&collector.metrics(), "b24watch_log_long_lines_total", &[("host", "giant"), ("log", "app")])
        };
        // 10 MiB read per tick: the 100 MiB line takes ten ticks to skip.
        let config =
            agent_config("app", &log, "nginx").replacen("[logs]\n", "[logs]\nmax_read_bytes_per_tick = 10485760\n", 1);
        append(b"2024/05/01 10:00:00 [error] 1#0: warm up\n");
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        eventually("the first line", Duration::from_secs(15), || (!groups(&collector).is_empty()).then_some(()));
        std::thread::sleep(Duration::from_secs(2));
        let baseline = agent.process.peak_rss_kib();
        append(&giant("ten", 10));
        append(b"\n2024/05/01 10:00:00 [error] 1#0: after ten\n");
        eventually("the line after the 10 MiB one", Duration::from_secs(20), || {
            groups(&collector).iter().any(|g| g.0.ends_with("after ten")).then_some(())
        });
        assert_eq!(long_lines(&collector), Some(1.0));
        let peak = agent.process.peak_rss_kib();
        eprintln!("agent peak RSS: {baseline} KiB before the 10 MiB line, {peak} KiB after");
        assert!(
            peak < baseline + MAX_LINE / 1024 + 1024,
            "peak RSS {peak} KiB after a 10 MiB line, {baseline} KiB before"
        );
        // The 100 MiB line: the agent is killed once it has cut the line and is skipping the rest.
        append(&giant("hundred", 100));
        eventually("the 100 MiB line cut", Duration::from_secs(20), || {
            (long_lines(&collector) == Some(2.0)).then_some(())
        });
        agent.process.kill();
        append(b"\n2024/05/01 10:00:00 [error] 1#0: after hundred\n");
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        eventually("the line after the 100 MiB one", Duration::from_secs(40), || {
            groups(&collector).iter().any(|g| g.0.ends_with("after hundred")).then_some(())
        });
        let names: Vec<(String, u64)> = groups(&collector);
        let expected: Vec<(String, u64)> = [
            "2024/05/01 10:00:00 [error] 1#0: after hundred",
            "2024/05/01 10:00:00 [error] 1#0: after ten",
            "2024/05/01 10:00:00 [error] 1#0: giant hundred",
            "2024/05/01 10:00:00 [error] 1#0: giant ten",
            "2024/05/01 10:00:00 [error] 1#0: warm up",
        ]
        .map(|e| (e.to_owned(), 1))
        .to_vec();
        assert_eq!(names, expected, "every line once, each giant line cut once");
        let body = collector.api("/api/v1/hosts/giant/errors?since=0&limit=100");
        for group in body["groups"].as_array().expect("groups") {
            assert_eq!(group["file"], log.display().to_string(), "each group names the file of its example");
        }
        assert_eq!(long_lines(&collector), Some(0.0), "the restarted agent did not count the rest as a new long line");
        let peak = agent.process.peak_rss_kib();
        eprintln!("restarted agent peak RSS after skipping the 100 MiB line: {peak} KiB");
        assert!(
            peak < baseline + MAX_LINE / 1024 + 1024,
            "peak RSS {peak} KiB after skipping 100 MiB, {baseline} KiB before"
        );
    }

    /// T09 for logs: the agent killed with SIGKILL again and again while lines are written.
    #[test]
    fn agent_killed_repeatedly_neither_loses_nor_repeats_error_lines() {
        let (dir, collector, token, log) = setup("kill");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = writer(log.clone(), 1000, Arc::clone(&stop), false);
        let config = agent_config("app", &log, "nginx");
        let mut seed = b24watch_e2e::now_ms() as u64 | 1;
        for _ in 0..8 {
            let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(800 + seed % 1500));
            agent.process.kill();
        }
        stop.store(true, Ordering::Relaxed);
        let written = handle.join().expect("writer");
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        let expected = written.div_ceil(10);
        eventually("every error line delivered", Duration::from_secs(20), || {
            (delivered_errors(&collector, "kill", "app") >= expected).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(delivered_errors(&collector, "kill", "app"), expected);
    }

    /// Acceptance 4: Bitrix's own rotation (copy to `.old`, truncate in place) loses no record,
    /// and records are counted by type.
    #[test]
    fn bitrix_exception_log_self_rotation_keeps_every_record_counted_by_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "bx");
        let collector = Collector::start(&data, "");
        let logs = dir.path().join("php");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let log = logs.join("exceptions.log");
        let _agent = Agent::start(
            dir.path(),
            &collector.grpc_url(),
            &token,
            1,
            &agent_config("bitrix_exceptions", &log, "bitrix_exceptions"),
        );
        let types = ["UNCAUGHT_EXCEPTION", "FATAL", "CAUGHT_EXCEPTION", "LOW_PRIORITY_ERROR"];
        let mut written = [0u64; 4];
        for idx in 0..400usize {
            let kind = idx % 4;
            let record = format!(
                "2024-05-01 10:00:{:02} - Host: portal.example.com - {} - [Bitrix\\Main\\SystemException] \nCall to undefined method item {idx} (0)\n/home/bitrix/www/bitrix/modules/main/lib/x.php:{idx}\n#0: Bitrix\\Main\\Application->run()\n\t/home/bitrix/www/index.php:5\n----------\n",
                idx % 60,
                types[kind]
            );
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open");
            file.write_all(record.as_bytes()).expect("write");
            drop(file);
            written[kind] += 1;
            // Bitrix: when the file exceeds log_size, copy it to .old and truncate in place.
            if std::fs::metadata(&log).expect("stat").len() > 16_000 {
                std::fs::copy(&log, logs.join("exceptions.log.old")).expect("copy to .old");
                std::fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
            }
            // About 5 KB per 0.7 s: a rotation every 2 s or so, slower than the agent's 1 s poll.
            // (Bitrix keeps one generation: two rotations within one poll would lose the older
            // copy on disk itself; at the default log_size of 1 MB that takes 100 KB/s.)
            if idx.is_multiple_of(20) {
                std::thread::sleep(Duration::from_millis(700));
            }
        }
        for (kind, count) in types.iter().zip(written) {
            let labels = [("host", "bx"), ("log", "bitrix_exceptions"), ("type", *kind)];
            let last = std::cell::Cell::new(None);
            let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                eventually(&format!("{kind} counted"), Duration::from_secs(20), || {
                    let value = metric(&collector.metrics(), "b24watch_bitrix_exceptions_total", &labels);
                    last.set(value);
                    (value == Some(count as f64)).then_some(())
                })
            }));
            assert!(found.is_ok(), "{kind}: expected {count}, last seen {:?}", last.get());
        }
        let high = written[0] + written[1];
        let body = collector.metrics();
        let labels = [("host", "bx"), ("log", "bitrix_exceptions"), ("severity", "high")];
        assert_eq!(metric(&body, "b24watch_log_errors_total", &labels), Some(high as f64));
        let groups = collector.api("/api/v1/hosts/bx/errors?since=0");
        let top = &groups["groups"][0];
        assert!(top["example"].as_str().is_some_and(|e| e.contains("Call to undefined method")), "{groups}");
    }
}

mod deploy {
    //! Issue #7 (part): systemd units and the readiness protocol they rely on.

    use std::os::unix::net::UnixDatagram;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    use b24watch_e2e::{ProcessGuard, bin, enroll};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
    }

    /// The unit with ExecStart pointing at the freshly built binary (verify checks it exists).
    fn unit_copy(dir: &Path, name: &str) -> PathBuf {
        let text =
            std::fs::read_to_string(repo().join("deploy/systemd").join(format!("{name}.service"))).expect("unit");
        let text = text.replace(&format!("/usr/bin/{name}"), &bin(name).display().to_string());
        let path = dir.join(format!("{name}.service"));
        std::fs::write(&path, text).expect("write unit");
        path
    }

    fn systemd_analyze(args: &[&str], unit: &Path) -> std::process::Output {
        Command::new("systemd-analyze")
            .args(args)
            .arg(unit)
            .output()
            .expect("systemd-analyze not found: install systemd (make test does on Debian/Ubuntu)")
    }

    #[test]
    fn units_verify_and_the_agent_unit_exposure_is_at_most_3() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["b24watch-agent", "b24watch-collector"] {
            let unit = unit_copy(dir.path(), name);
            let out = systemd_analyze(&["verify"], &unit);
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            let text = std::fs::read_to_string(&unit).expect("unit");
            for line in ["Type=notify", "RestartPreventExitStatus=78", "ProtectSystem=strict", "NoNewPrivileges=yes"] {
                assert!(text.contains(line), "{name} lacks {line}");
            }
        }
        // --threshold is the exposure level times ten.
        let agent = unit_copy(dir.path(), "b24watch-agent");
        let out = systemd_analyze(&["security", "--offline=true", "--threshold=30"], &agent);
        assert!(out.status.success(), "agent exposure above 3.0:\n{}", String::from_utf8_lossy(&out.stdout));
        let text = std::fs::read_to_string(&agent).expect("unit");
        assert!(text.contains("ProtectHome=read-only"), "Bitrix lives under /home: read-only, not hidden");
        assert!(text.contains("CapabilityBoundingSet=CAP_DAC_READ_SEARCH"));
    }

    fn promtool(args: &[&str]) -> std::process::Output {
        Command::new("promtool")
            .args(args)
            .current_dir(repo().join("deploy/prometheus"))
            .output()
            .expect("promtool not found: run `make test`, which installs the prometheus package")
    }

    #[test]
    fn alert_rules_pass_promtool_check_and_unit_tests_and_have_runbooks() {
        for args in [
            &["check", "rules", "b24watch.rules.yml"][..],
            &["test", "rules", "b24watch.rules.test.yml"][..],
            &["check", "config", "prometheus.yml"][..],
        ] {
            let out = promtool(args);
            assert!(
                out.status.success(),
                "promtool {args:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let rules = std::fs::read_to_string(repo().join("deploy/prometheus/b24watch.rules.yml")).expect("rules");
        let runbooks = std::fs::read_to_string(repo().join("docs/runbooks.md")).expect("runbooks");
        let tests = std::fs::read_to_string(repo().join("deploy/prometheus/b24watch.rules.test.yml")).expect("tests");
        let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
        assert!(alerts.len() >= 9, "{alerts:?}");
        for alert in alerts {
            assert!(runbooks.contains(&format!("## {alert}\n")), "docs/runbooks.md lacks a section for {alert}");
            assert!(tests.contains(&format!("alertname: {alert}\n")), "no promtool test for {alert}");
            let anchor = format!("runbooks.md#{}", alert.to_ascii_lowercase());
            assert!(rules.contains(&anchor), "{alert} has no runbook_url to {anchor}");
        }
        for severity in rules.lines().filter_map(|l| l.trim().strip_prefix("severity: ")) {
            assert!(
                ["critical", "high", "medium", "low"].contains(&severity),
                "severity {severity} is not SLA vocabulary"
            );
        }
    }

    /// A real Prometheus scrapes a real collector (fed by a real agent tailing an error log) and
    /// evaluates every alert rule: each must evaluate without error.
    #[test]
    fn real_prometheus_scrapes_the_collector_and_evaluates_every_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "prom");
        let collector = b24watch_e2e::Collector::start(&data, "");
        let log = dir.path().join("error.log");
        std::fs::write(&log, "2024/05/01 10:00:00 [notice] 1#0: started\n").expect("log");
        let config = format!(
            "[logs]\nread_from = \"beginning\"\n[[logs.file]]\nname = \"nginx_error\"\npaths = [\"{}\"]\npreset = \"nginx\"\n",
            log.display()
        );
        let _agent = b24watch_e2e::Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        let rules = repo().join("deploy/prometheus/b24watch.rules.yml");
        let prom_config = dir.path().join("prometheus.yml");
        std::fs::write(
            &prom_config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: b24watch\n    honor_labels: true\n    static_configs:\n      - targets: [\"{}\"]\n",
                rules.display(),
                collector.http
            ),
        )
        .expect("prometheus config");
        let port = b24watch_e2e::free_port();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let _prometheus = ProcessGuard::spawn("prometheus", cmd, &dir.path().join("prometheus.log"));
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        b24watch_e2e::eventually("prometheus scraped the agent's series", Duration::from_secs(60), || {
            let (_, body) = b24watch_e2e::http_get(addr, "/api/v1/query?query=b24watch_log_errors_total").ok()?;
            body.contains("nginx_error").then_some(())
        });
        // Counters must be seen at 0 before they move, or increase() cannot see the first step.
        std::thread::sleep(Duration::from_secs(3));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, b"2024/05/01 10:00:05 [emerg] 1#0: no live upstreams\n")
            })
            .expect("append");
        let rules = b24watch_e2e::eventually(
            "every rule evaluated, the critical one with an alert",
            Duration::from_secs(30),
            || {
                let (_, body) = b24watch_e2e::http_get(addr, "/api/v1/rules").ok()?;
                let json: serde_json::Value = serde_json::from_str(&body).ok()?;
                let rules: Vec<serde_json::Value> = json["data"]["groups"]
                    .as_array()?
                    .iter()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .collect();
                let evaluated =
                    rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")));
                let alerted = rules.iter().any(|r| {
                    r["name"] == "B24WatchCriticalLogError" && r["alerts"].as_array().is_some_and(|a| !a.is_empty())
                });
                (evaluated && alerted).then_some(rules)
            },
        );
        assert!(rules.len() >= 9);
        for rule in &rules {
            assert_eq!(rule["health"], "ok", "rule {} failed to evaluate: {}", rule["name"], rule["lastError"]);
        }
        let critical = rules.iter().find(|r| r["name"] == "B24WatchCriticalLogError").expect("rule present");
        assert_eq!(critical["alerts"][0]["labels"]["host"], "prom", "{critical}");

        // Every dashboard query runs on this Prometheus, and names only series that exist.
        let mut known: std::collections::BTreeSet<String> =
            b24watch_proto::catalog::SERIES.iter().map(|d| format!("b24watch_{}", d.name)).collect();
        for line in collector.metrics().lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                known.insert(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        let mut queries = 0;
        for entry in std::fs::read_dir(repo().join("deploy/grafana/dashboards")).expect("dashboards dir") {
            let path = entry.expect("entry").path();
            let dashboard: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).expect("read dashboard")).expect("dashboard JSON");
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()), "{file}: uid");
            let mut exprs: Vec<String> = dashboard["panels"]
                .as_array()
                .expect("panels")
                .iter()
                .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
                .filter_map(|t| t["expr"].as_str().map(str::to_owned))
                .collect();
            for var in dashboard["templating"]["list"].as_array().expect("templating") {
                if let Some(q) = var["query"]["query"].as_str() {
                    let inner = q.strip_prefix("label_values(").and_then(|q| q.split(',').next()).unwrap_or(q);
                    exprs.push(inner.to_owned());
                }
            }
            if file != "b24watch-fleet.json" {
                assert!(
                    dashboard["templating"]["list"].as_array().expect("list").iter().any(|v| v["name"] == "host"),
                    "{file} has no $host variable"
                );
            }
            for expr in exprs {
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("b24watch_"))
                {
                    assert!(known.contains(name), "{file}: {name} is not a series b24watch exposes ({expr})");
                }
                let query = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$__interval", "15s")
                    .replace("$__range", "1h")
                    .replace("$host", "prom");
                let encoded: String = query
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                    .collect();
                let (status, body) =
                    b24watch_e2e::http_get(addr, &format!("/api/v1/query?query={encoded}")).expect("query prometheus");
                assert_eq!(status, 200, "{file}: {query}: {body}");
                assert!(body.contains("\"status\":\"success\""), "{file}: {query}: {body}");
                queries += 1;
            }
        }
        assert!(queries >= 40, "only {queries} dashboard queries found");
        let (_, cpu) =
            b24watch_e2e::http_get(addr, "/api/v1/query?query=b24watch_cpu_usage_ratio%7Bhost%3D%22prom%22%7D")
                .expect("query");
        assert!(cpu.contains("\"host\":\"prom\""), "the host dashboard's series has data: {cpu}");
    }

    /// Issue #7: the packages built by `scripts/package.sh` (run by `make test`): the .deb
    /// installs here with its files, the `b24watch` user and valid units; the .rpm exists; the
    /// binaries need no glibc symbol newer than 2.28 (Rocky/Alma 8).
    #[test]
    fn packages_install_with_files_user_and_units_and_need_glibc_2_28_at_most() {
        let dir = repo().join("target/package");
        let find = |prefix: &str, ext: &str| -> std::path::PathBuf {
            std::fs::read_dir(&dir)
                .unwrap_or_else(|err| panic!("{}: {err}: run `make test` or scripts/package.sh first", dir.display()))
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    name.starts_with(prefix) && name.ends_with(ext)
                })
                .unwrap_or_else(|| panic!("no {prefix}*{ext} in {}: run scripts/package.sh", dir.display()))
        };
        for (pkg, files) in [
            (
                "b24watch-agent",
                [
                    "/usr/bin/b24watch-agent",
                    "/usr/lib/systemd/system/b24watch-agent.service",
                    "/etc/sysconfig/b24watch-agent",
                ],
            ),
            (
                "b24watch-collector",
                [
                    "/usr/bin/b24watch-collector",
                    "/usr/lib/systemd/system/b24watch-collector.service",
                    "/usr/share/b24watch/prometheus/b24watch.rules.yml",
                ],
            ),
        ] {
            let path = find(pkg, ".rpm");
            let rpm = std::fs::read(&path).expect("read rpm");
            assert_eq!(&rpm[..4], &[0xed, 0xab, 0xee, 0xdb], "{pkg}.rpm is not an RPM");
            // Debian's `rpm` package reads it as Rocky's dnf would.
            let query = |args: &[&str]| {
                let out = Command::new("rpm").args(args).arg(&path).output().expect("rpm (package rpm)");
                assert!(
                    out.status.success(),
                    "rpm {args:?} {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            let listing = query(&["-qpl"]);
            for file in files {
                assert!(listing.contains(file), "{pkg}.rpm lacks {file}: {listing}");
            }
            let config = query(&["-qpc"]);
            assert!(config.contains("/etc/b24watch/"), "{pkg}.rpm marks no config file: {config}");
            let listing = query(&["-qp", "--scripts"]);
            assert!(listing.contains("useradd --system"), "{pkg}.rpm does not create the user: {listing}");
        }
        let debs = [find("b24watch-agent_", ".deb"), find("b24watch-collector_", ".deb")];
        assert!(rustix::process::getuid().is_root(), "installing the .deb needs root (CI runs as root)");
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("run");
            assert!(
                out.status.success(),
                "{cmd:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        run(Command::new("dpkg").arg("-i").args(&debs).env("DEBIAN_FRONTEND", "noninteractive"));
        let result = std::panic::catch_unwind(|| {
            for path in [
                "/usr/bin/b24watch-agent",
                "/usr/bin/b24watch-collector",
                "/lib/systemd/system/b24watch-agent.service",
                "/lib/systemd/system/b24watch-collector.service",
                "/etc/b24watch/agent.toml",
                "/etc/b24watch/collector.toml",
                "/etc/default/b24watch-agent",
                "/usr/share/doc/b24watch/runbooks.md",
                "/usr/share/b24watch/prometheus/b24watch.rules.yml",
                "/usr/share/b24watch/grafana/dashboards/b24watch-sla.json",
            ] {
                assert!(std::path::Path::new(path).exists(), "{path} not installed");
            }
            let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "b24watch-agent"]));
            assert!(conffiles.contains("/etc/b24watch/agent.toml"), "agent.toml is not a conffile: {conffiles}");
            let user = run(Command::new("getent").args(["passwd", "b24watch"]));
            assert!(user.trim_end().ends_with("/usr/sbin/nologin"), "{user}");
            let uid: u32 = user.split(':').nth(2).and_then(|u| u.parse().ok()).expect("uid");
            assert!(uid < 1000, "b24watch must be a system user: {user}");
            run(Command::new("/usr/bin/b24watch-agent").args([
                "--config",
                "/etc/b24watch/agent.toml",
                "--token",
                "x.y",
                "check-config",
            ]));
            run(Command::new("/usr/bin/b24watch-collector").args([
                "--config",
                "/etc/b24watch/collector.toml",
                "check-config",
            ]));
            for unit in ["b24watch-agent", "b24watch-collector"] {
                run(Command::new("systemd-analyze").args(["verify", &format!("/lib/systemd/system/{unit}.service")]));
            }
            for bin in ["/usr/bin/b24watch-agent", "/usr/bin/b24watch-collector"] {
                let symbols = run(Command::new("objdump").args(["-T", bin]));
                let highest = symbols
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .filter_map(|w| w.strip_prefix("GLIBC_"))
                    .filter_map(|v| {
                        let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
                        Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
                    })
                    .max()
                    .expect("glibc symbols");
                assert!(highest <= (2, 28), "{bin} needs GLIBC_{}.{}", highest.0, highest.1);
            }
        });
        run(Command::new("dpkg").args(["--purge", "b24watch-agent", "b24watch-collector"]));
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    /// The configuration reference is generated from what the binaries print, so it cannot drift
    /// from the code: when stale, this test rewrites it and fails, and the new file gets committed.
    #[test]
    fn configuration_reference_matches_the_binaries() {
        let mut doc = String::from(
            "# Configuration reference\n\n\
             Generated from `b24watch-agent --print-default-config` and\n\
             `b24watch-collector --print-default-config` by the test\n\
             `deploy::configuration_reference_matches_the_binaries`; do not edit by hand. Every key is optional and\n\
             the values shown are the defaults. A missing file means all defaults; unknown keys are rejected;\n\
             `--check-config` validates a file and exits 0 or 78. Flags and `B24WATCH_*` environment variables\n\
             override the file (`--help` lists them).\n",
        );
        for (title, binary, path) in [
            ("Agent", "b24watch-agent", "/etc/b24watch/agent.toml"),
            ("Collector", "b24watch-collector", "/etc/b24watch/collector.toml"),
        ] {
            let out = Command::new(bin(binary)).arg("--print-default-config").output().expect("print default config");
            assert!(out.status.success());
            doc.push_str(&format!("\n## {title}: `{path}`\n\n```toml\n{}```\n", String::from_utf8_lossy(&out.stdout)));
        }
        let path = repo().join("docs/configuration.md");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != doc {
            std::fs::write(&path, &doc).expect("write docs/configuration.md");
            panic!("docs/configuration.md was stale and has been regenerated: commit it");
        }
    }

    fn expect_datagram(socket: &UnixDatagram, want: &str) {
        let mut buf = [0u8; 256];
        let deadline = std::time::Instant::now() + b24watch_e2e::patience(Duration::from_secs(20));
        loop {
            assert!(std::time::Instant::now() < deadline, "no {want} from the service");
            if let Ok(n) = socket.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == want)
            {
                return;
            }
        }
    }

    #[test]
    fn both_binaries_report_ready_and_stopping_to_systemd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "notify");
        let sock_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let grpc = format!("127.0.0.1:{}", b24watch_e2e::free_port());
        let mut cmd = Command::new(bin("b24watch-collector"));
        cmd.arg("--config")
            .arg(dir.path().join("absent.toml"))
            .arg("--data-dir")
            .arg(&data)
            .arg("--grpc-listen")
            .arg(&grpc)
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", b24watch_e2e::free_port()))
            .env("NOTIFY_SOCKET", &sock_path);
        let collector = ProcessGuard::spawn("b24watch-collector", cmd, &dir.path().join("collector.log"));
        expect_datagram(&socket, "READY=1");
        let mut cmd = Command::new(bin("b24watch-agent"));
        cmd.arg("--config")
            .arg(dir.path().join("absent.toml"))
            .arg("--collector-url")
            .arg(format!("http://{grpc}"))
            .arg("--token-file")
            .arg(&token)
            .arg("--state-dir")
            .arg(dir.path().join("agent-state"))
            .env("NOTIFY_SOCKET", &sock_path);
        let agent = ProcessGuard::spawn("b24watch-agent", cmd, &dir.path().join("agent.log"));
        expect_datagram(&socket, "READY=1");
        agent.signal(rustix::process::Signal::TERM);
        expect_datagram(&socket, "STOPPING=1");
        collector.signal(rustix::process::Signal::TERM);
        expect_datagram(&socket, "STOPPING=1");
    }
}

mod health {
    //! Issue #4: MySQL and Bitrix health against a real MariaDB of the test's own, and the portal
    //! probe against a real HTTP(S) server on loopback.

    use std::path::Path;
    use std::time::{Duration, Instant};

    use b24watch_e2e::mariadb::{BITRIX_SCHEMA, MariaDb};
    use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

    const MONITOR_PASSWORD: &str = "m0n!t{or+[pw'";

    /// The latest result of `check` on `target`, as JSON.
    fn check(collector: &Collector, host: &str, check: &str, target: &str) -> Option<serde_json::Value> {
        let body = collector.api(&format!("/api/v1/hosts/{host}/checks"));
        body["checks"].as_array()?.iter().find(|c| c["check"] == check && c["target"] == target).cloned()
    }

    fn status_of(collector: &Collector, host: &str, name: &str, target: &str) -> Option<(String, String, String)> {
        check(collector, host, name, target).map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (field("status"), field("reason"), field("severity"))
        })
    }

    /// A least-privilege monitoring user, as the README tells users to create it.
    fn create_monitor_user(db: &MariaDb) {
        db.sql(&format!(
            "CREATE USER 'b24watch'@'localhost' IDENTIFIED BY '{}' WITH MAX_USER_CONNECTIONS 3;
             GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'b24watch'@'localhost';",
            MONITOR_PASSWORD.replace('\'', "\\'")
        ));
    }

    fn mysql_config(dir: &Path, db: &MariaDb, interval: u64, timeout: u64) -> String {
        let password_file = dir.join("mysql.password");
        std::fs::write(&password_file, format!("{MONITOR_PASSWORD}\n")).expect("password file");
        format!(
            "[logs]\nenabled = false\n[services]\nenabled = false\n[mysql]\nsockets = [\"{}\"]\nuser = \"b24watch\"\n\
             password_file = \"{}\"\ninterval_secs = {interval}\ntimeout_secs = {timeout}\n",
            db.socket.display(),
            password_file.display()
        )
    }

    /// Bitrix databases: `sitemanager` with every problem, `healthy` without any.
    fn load_bitrix(db: &MariaDb) {
        for name in ["sitemanager", "healthy"] {
            db.sql(&format!("CREATE DATABASE {name}; USE {name}; {BITRIX_SCHEMA}"));
        }
        db.sql(
            "USE sitemanager;
             INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL, RUNNING, RETRY_COUNT) VALUES
               ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 2 HOUR, NOW() - INTERVAL 2 HOUR, 60, 'N', 0),
               ('crm', '\\\\Bitrix\\\\Crm\\\\Agent::run();', 'Y', NOW() - INTERVAL 2 HOUR, NOW() - INTERVAL 90 MINUTE, 60, 'N', 0),
               ('im', 'CIMMail::MailMessageAgent();', 'Y', NOW() - INTERVAL 2 HOUR, NOW() - INTERVAL 1 HOUR, 600, 'N', 0),
               ('main', 'CSiteCheckerTest::CommonTest();', 'Y', NOW() - INTERVAL 3 HOUR, NOW() + INTERVAL 1 HOUR, 86400, 'N', 0);
             -- stuck: picked up 30 min ago, lease (DATE_CHECK) expired, not yet due again
             INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, DATE_CHECK, RUNNING, RETRY_COUNT) VALUES
               ('search', 'CSearch::ReindexAgent();', 'Y', NOW() - INTERVAL 1 DAY, NOW() + INTERVAL 1 HOUR, NOW() - INTERVAL 20 MINUTE, 'Y', 1);
             -- auto-disabled by Bitrix after 3 failures (keeps RUNNING='Y')
             INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, DATE_CHECK, RUNNING, RETRY_COUNT) VALUES
               ('sale', 'CSaleRecurring::AgentCheckRecurring();', 'N', NOW() - INTERVAL 2 DAY, NOW() - INTERVAL 2 DAY, NOW() - INTERVAL 2 DAY, 'Y', 3);
             INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, SUCCESS_EXEC)
               SELECT 'NEW_USER', 's1', NOW() - INTERVAL 3 HOUR, 'N' FROM seq_1_to_150;
             INSERT INTO b_option(MODULE_ID, NAME, VALUE) VALUES ('main', 'site_checker_success', 'N');",
        );
        db.sql(
            "USE healthy;
             INSERT INTO b_agent(MODULE_ID, NAME, ACTIVE, LAST_EXEC, NEXT_EXEC, AGENT_INTERVAL, RUNNING, RETRY_COUNT) VALUES
               ('main', 'CEvent::CleanUpAgent();', 'Y', NOW() - INTERVAL 30 SECOND, NOW() + INTERVAL 30 SECOND, 60, 'N', 0),
               ('main', 'CUser::CleanUpHitAuthAgent();', 'Y', NOW() - INTERVAL 5 MINUTE, NOW() + INTERVAL 1 DAY, 86400, 'N', 0);
             INSERT INTO b_event(EVENT_NAME, LID, DATE_INSERT, DATE_EXEC, SUCCESS_EXEC) VALUES
               ('NEW_USER', 's1', NOW() - INTERVAL 2 MINUTE, NOW() - INTERVAL 1 MINUTE, 'Y');
             INSERT INTO b_option(MODULE_ID, NAME, VALUE) VALUES ('main', 'site_checker_success', 'Y');
             INSERT INTO b_event_log(TIMESTAMP_X, SEVERITY, AUDIT_TYPE_ID, MODULE_ID, ITEM_ID) VALUES
               (NOW() - INTERVAL 2 DAY, 'INFO', 'SITE_CHECKER_ERROR', 'main', ''),
               (NOW() - INTERVAL 5 HOUR, 'INFO', 'SITE_CHECKER_SUCCESS', 'main', '');",
        );
    }

    /// Document roots shaped like BitrixVM: the default site with `.settings.php` (its own login
    /// is unused: the [mysql] user wins), an extra site with an old `dbconn.php`.
    fn write_sites(dir: &Path, db: &MariaDb) {
        let default = dir.join("sites/www/bitrix");
        std::fs::create_dir_all(&default).expect("site dir");
        std::fs::write(
            default.join(".settings.php"),
            format!(
                "<?php\nreturn array (\n  'connections' => array ('value' => array ('default' => array (\n    \
                 'className' => '\\\\Bitrix\\\\Main\\\\DB\\\\MysqliConnection',\n    'host' => 'localhost:{}',\n    \
                 'database' => 'sitemanager',\n    'login' => 'bitrix0',\n    'password' => 'site-secret-1',\n    \
                 'options' => 2,\n  ),), 'readonly' => true),\n  'exception_handling' => array('value' => array(\n    \
                 'log' => array('settings' => array('file' => '{}/exceptions.log', 'log_size' => 1000000)))),\n);\n",
                db.socket.display(),
                dir.display()
            ),
        )
        .expect("settings");
        let old = dir.join("sites/ext_www/healthy.example.com/bitrix/php_interface");
        std::fs::create_dir_all(&old).expect("site dir");
        std::fs::write(
            old.join("dbconn.php"),
            "<?\n$DBType = \"mysql\";\n$DBHost = \"localhost\";\n$DBLogin = 'bitrix1';\n$DBPassword = \"site-secret-2\";\n\
             $DBName = \"healthy\";\ndefine(\"BX_CRONTAB_SUPPORT\", true);\n?>",
        )
        .expect("dbconn");
        // Not a site: no settings file.
        std::fs::create_dir_all(dir.join("sites/ext_www/static.example.com")).expect("dir");
    }

    /// Acceptance 1 and 4: cron stopped, a stuck agent, an auto-disabled agent and a mail backlog
    /// are each found with their severity; the healthy site and the server pass every check with
    /// only PROCESS, REPLICATION CLIENT and SELECT; the monitoring user cannot write.
    #[test]
    fn bitrix_problems_are_found_with_their_severity_and_a_healthy_site_passes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = MariaDb::start(&dir.path().join("db"));
        load_bitrix(&db);
        create_monitor_user(&db);
        write_sites(dir.path(), &db);
        let data = dir.path().join("collector");
        let token = enroll(&data, "bx-01");
        let collector = Collector::start(&data, "");
        let config = format!(
            "{}[bitrix]\nsite_roots = [\"{root}/sites/www\", \"{root}/sites/ext_www/*\"]\ninterval_secs = 10\n",
            mysql_config(dir.path(), &db, 2, 5),
            root = dir.path().display()
        );
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        let host = "bx-01";
        eventually("Bitrix checks of both sites", Duration::from_secs(30), || {
            status_of(&collector, host, "bitrix_cron", "healthy.example.com")?;
            status_of(&collector, host, "bitrix_cron", "default")
        });
        let expect = |name: &str, target: &str, status: &str, reason: &str, severity: &str| {
            let got = status_of(&collector, host, name, target);
            assert_eq!(
                got,
                Some((status.to_owned(), reason.to_owned(), severity.to_owned())),
                "{name} on {target}; all checks: {}",
                collector.api(&format!("/api/v1/hosts/{host}/checks"))
            );
        };
        expect("bitrix_cron", "default", "failed", "overdue", "high");
        expect("bitrix_agents_stuck", "default", "failed", "stuck", "medium");
        expect("bitrix_agents_disabled", "default", "failed", "auto_disabled", "medium");
        expect("bitrix_mail_queue", "default", "failed", "backlog", "medium");
        expect("bitrix_site_checker", "default", "failed", "site_checker_failed", "low");
        for name in [
            "bitrix_cron",
            "bitrix_agents_stuck",
            "bitrix_agents_disabled",
            "bitrix_agents_failing",
            "bitrix_mail_queue",
            "bitrix_site_checker",
        ] {
            expect(
                name,
                "healthy.example.com",
                "ok",
                "",
                check(&collector, host, name, "healthy.example.com").expect("present")["severity"]
                    .as_str()
                    .unwrap_or_default(),
            );
        }
        expect("mysql_up", "mysql", "ok", "", "high");
        expect("bitrix_db_config", "mysql", "ok", "", "low");
        let failing_server_checks: Vec<serde_json::Value> =
            collector.api(&format!("/api/v1/hosts/{host}/checks"))["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .filter(|c| c["target"] == "mysql" && c["status"] != "ok")
                .cloned()
                .collect();
        assert!(failing_server_checks.is_empty(), "with the least-privilege grants: {failing_server_checks:?}");

        let body = collector.metrics();
        let site = |s: &'static str| [("host", host), ("site", s)];
        assert_eq!(metric(&body, "b24watch_mysql_up", &[("host", host)]), Some(1.0), "{body}");
        assert!(metric(&body, "b24watch_mysql_threads_connected", &[("host", host)]).is_some_and(|v| v >= 1.0));
        assert_eq!(metric(&body, "b24watch_bitrix_agents_overdue", &site("default")), Some(3.0));
        assert_eq!(metric(&body, "b24watch_bitrix_agents_overdue", &site("healthy.example.com")), Some(0.0));
        assert_eq!(metric(&body, "b24watch_bitrix_mail_queue_pending", &site("default")), Some(150.0));
        let last_run = metric(&body, "b24watch_bitrix_cron_last_run_timestamp_seconds", &site("healthy.example.com"))
            .expect("cron last run");
        let now = b24watch_e2e::now_ms() as f64 / 1000.0;
        assert!((now - 120.0..=now + 5.0).contains(&last_run), "last run {last_run} vs now {now}");
        let checked =
            metric(&body, "b24watch_bitrix_site_checker_last_run_timestamp_seconds", &site("healthy.example.com"))
                .expect("site checker last run");
        assert!((checked - (now - 5.0 * 3600.0)).abs() < 120.0, "site checker ran 5 h ago: {checked} vs {now}");
        b24watch_e2e::promtool_check_metrics(&body).expect("promtool accepts the exposition");

        // Config drift is noticed (and is a low-severity finding).
        db.sql("SET GLOBAL innodb_strict_mode = ON");
        eventually("config drift reported", Duration::from_secs(15), || {
            let (status, reason, severity) = status_of(&collector, host, "bitrix_db_config", "mysql")?;
            (status == "failed").then(|| assert_eq!((reason.as_str(), severity.as_str()), ("config_drift", "low")))
        });

        // The monitoring user can read but not write.
        let denied = |sql: &str| {
            let err = db.sql_as("b24watch", MONITOR_PASSWORD, sql).expect_err("write must be refused");
            assert!(err.contains("denied"), "{sql}: {err}");
        };
        denied("INSERT INTO sitemanager.b_option(MODULE_ID, NAME, VALUE) VALUES ('x', 'y', 'z')");
        denied("CREATE TABLE sitemanager.b_b24watch_probe (id int)");
        denied("UPDATE healthy.b_agent SET ACTIVE = 'N'");
        let log = agent.process.log_text();
        for secret in [MONITOR_PASSWORD, "site-secret-1", "site-secret-2"] {
            assert!(!log.contains(secret), "the agent log shows a password");
        }
        let exposition = collector.metrics();
        assert!(!exposition.contains("site-secret"), "a password reached /metrics");
    }

    /// Acceptance 2 (T35–T37): MariaDB stopped, frozen and given a wrong password: three distinct
    /// reasons, each within a few intervals; host sampling goes on; recovery is noticed.
    #[test]
    fn mysql_down_stalled_and_refusing_are_distinct_and_host_sampling_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = MariaDb::start(&dir.path().join("db"));
        create_monitor_user(&db);
        let data = dir.path().join("collector");
        let token = enroll(&data, "db-01");
        let collector = Collector::start(&data, "");
        let config = format!("{}[bitrix]\nenabled = false\n", mysql_config(dir.path(), &db, 1, 2));
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        let host = "db-01";
        let mysql_up = || status_of(&collector, host, "mysql_up", "mysql");
        let wait_for = |what: &str, status: &str, reason: &str| -> Duration {
            let started = Instant::now();
            eventually(what, Duration::from_secs(15), || {
                mysql_up().filter(|(s, r, _)| s == status && r == reason).map(|_| ())
            });
            started.elapsed()
        };
        wait_for("mysql up", "ok", "");

        db.stop();
        let took = wait_for("mysql down", "failed", "down");
        assert_eq!(metric(&collector.metrics(), "b24watch_mysql_up", &[("host", host)]), Some(0.0));
        let before = collector.points(host, "load1").len();
        std::thread::sleep(Duration::from_secs(3));
        assert!(collector.points(host, "load1").len() >= before + 2, "host sampling stalled while MySQL was down");
        eprintln!("down noticed after {took:?}");
        db.restart();
        wait_for("mysql back after restart", "ok", "");

        db.pause(true);
        let took = wait_for("mysql stalled", "failed", "timeout");
        let before = collector.points(host, "load1").len();
        std::thread::sleep(Duration::from_secs(4));
        let during = collector.points(host, "load1").len() - before;
        db.pause(false);
        assert!(during >= 3, "only {during} host samples in 4 s while MySQL was frozen");
        eprintln!("stall noticed after {took:?}");
        wait_for("mysql back after the stall", "ok", "");
        // At most 3 monitoring connections at any time (MAX_USER_CONNECTIONS would refuse a 4th,
        // which would show as too_many_connections).
        let history: String = b24watch_e2e::integrity_check(&collector.db_path());
        assert_eq!(history, "ok");

        std::fs::write(dir.path().join("mysql.password"), "wrong-password\n").expect("password file");
        let took = wait_for("wrong password", "failed", "auth_failed");
        eprintln!("auth failure noticed after {took:?}");
        std::fs::write(dir.path().join("mysql.password"), format!("{MONITOR_PASSWORD}\n")).expect("password file");
        wait_for("mysql back with the right password", "ok", "");

        let failures = collector.metrics();
        for reason in ["down", "timeout", "auth_failed"] {
            assert!(
                metric(&failures, "b24watch_mysql_check_failures_total", &[("host", host), ("reason", reason)])
                    .is_some_and(|n| n >= 1.0),
                "no {reason} counted: {failures}"
            );
        }
        assert!(
            metric(
                &failures,
                "b24watch_mysql_check_failures_total",
                &[("host", host), ("reason", "too_many_connections")]
            )
            .is_none(),
            "more than 3 monitoring connections were open at once"
        );
        let log = agent.process.log_text();
        assert!(!log.contains(MONITOR_PASSWORD) && !log.contains("wrong-password"), "a password reached the log");
    }
}

mod probe {
    //! Issue #4: the portal probe against a real HTTP(S) server on loopback.

    use std::time::Duration;

    use b24watch_e2e::portal::Portal;
    use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

    fn check(collector: &Collector, host: &str, name: &str, target: &str) -> Option<(String, String, String)> {
        let body = collector.api(&format!("/api/v1/hosts/{host}/checks"));
        body["checks"].as_array()?.iter().find(|c| c["check"] == name && c["target"] == target).map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (field("status"), field("reason"), field("severity"))
        })
    }

    /// A portal answering 502 is a critical failure; the keyword is checked; a certificate that
    /// expires in 5 days is reported with its exact notAfter and a low-severity finding.
    #[test]
    fn portal_failures_are_critical_and_tls_expiry_is_reported() {
        use rcgen::{CertificateParams, KeyPair};
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let not_after = time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns") + time::Duration::days(5);
        params.not_after = not_after;
        let cert = params.self_signed(&key).expect("certificate");
        let https = Portal::start(Some((vec![cert.der().to_vec()], key.serialize_der())));
        let http = Portal::start(None);

        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "web-01");
        let collector = Collector::start(&data, "");
        let plain_url = format!("http://127.0.0.1:{}/stream/", http.addr.port());
        let tls_url = format!("https://localhost:{}/", https.addr.port());
        let config = format!(
            "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n[probe]\ninterval_secs = 5\n\
             timeout_secs = 3\ntargets = [{{ url = \"{plain_url}\", keyword = \"Bitrix24\" }}, \
             {{ url = \"{tls_url}\", verify_tls = false }}]\n"
        );
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        let host = "web-01";
        eventually("both probes ok", Duration::from_secs(20), || {
            let plain = check(&collector, host, "portal_probe", &plain_url)?;
            let tls = check(&collector, host, "portal_probe", &tls_url)?;
            (plain.0 == "ok" && tls.0 == "ok").then_some(())
        });
        assert_eq!(
            check(&collector, host, "tls_certificate", &tls_url),
            Some(("failed".into(), "expiring".into(), "low".into()))
        );
        let body = collector.metrics();
        let expiry =
            metric(&body, "b24watch_probe_tls_expiry_timestamp_seconds", &[("host", host), ("target", &tls_url)]);
        assert_eq!(expiry, Some(not_after.unix_timestamp() as f64), "{body}");
        assert_eq!(metric(&body, "b24watch_probe_http_status", &[("host", host), ("target", &plain_url)]), Some(200.0));

        http.set_status(502);
        eventually("502 is a critical failure", Duration::from_secs(20), || {
            check(&collector, host, "portal_probe", &plain_url).filter(|c| c.0 == "failed")
        });
        assert_eq!(
            check(&collector, host, "portal_probe", &plain_url),
            Some(("failed".into(), "http_status".into(), "critical".into()))
        );
        assert_eq!(
            metric(&collector.metrics(), "b24watch_probe_success", &[("host", host), ("target", &plain_url)]),
            Some(0.0)
        );

        http.set_status(200);
        *http.body.lock().expect("body") = "<html>maintenance</html>".into();
        eventually("keyword missing", Duration::from_secs(20), || {
            check(&collector, host, "portal_probe", &plain_url).filter(|c| c.1 == "keyword_missing")
        });

        drop(http);
        eventually("portal down", Duration::from_secs(20), || {
            check(&collector, host, "portal_probe", &plain_url).filter(|c| c.1 == "down")
        });
    }
}

mod sla {
    //! Issue #6: uptime from real processes: backfill is not downtime, a dead agent is, the
    //! collector's own downtime is unknown, a failing portal is a critical incident.

    use std::time::Duration;

    use b24watch_e2e::portal::Portal;
    use b24watch_e2e::proxy::Proxy;
    use b24watch_e2e::{Agent, Collector, enroll, eventually, now_ms};

    /// The `agent` (or other) signal of `host` over `[from, now)`: (up, down, unknown, maintenance) ms.
    fn signal(collector: &Collector, host: &str, name: &str, from: i64) -> Option<(i64, i64, i64, i64)> {
        let body = collector.api(&format!("/api/v1/uptime?host={host}&from={from}"));
        let signals = body["hosts"][0]["signals"].as_array()?.clone();
        let s = signals.iter().find(|s| s["signal"] == name)?;
        let ms = |k: &str| s[k].as_i64().unwrap_or(-1);
        Some((ms("up_ms"), ms("down_ms"), ms("unknown_ms"), ms("maintenance_ms")))
    }

    const COLLECTOR: &str = "[collector]\nagent_timeout_secs = 10\n[sla]\nsilence_grace_secs = 60\n";

    /// T40 (a): an agent cut off from the collector shows "no data" meanwhile, and after its
    /// spool backfills, the time is computed from real samples: no downtime.
    #[test]
    fn outage_backfilled_from_the_spool_is_not_downtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "cut-01");
        let collector = Collector::start(&data, COLLECTOR);
        let proxy = Proxy::start(collector.grpc);
        let config = "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n";
        let _agent = Agent::start(dir.path(), &format!("http://{}", proxy.addr), &token, 1, config);
        // A second back, so a query right away still has a window (from < to).
        let t0 = now_ms() - 1_000;
        collector.wait_for_load_points("cut-01", 3);
        proxy.cut();
        std::thread::sleep(Duration::from_secs(25));
        let during = signal(&collector, "cut-01", "agent", t0).expect("agent signal");
        assert_eq!(during.1, 0, "no downtime while the silence is within the grace: {during:?}");
        assert!(during.2 >= 8_000, "the cut shows as unknown (no data): {during:?}");
        let cut_end = now_ms();
        proxy.restore();
        eventually("spool backfilled", Duration::from_secs(30), || {
            let ts = collector.unique_load_ts("cut-01");
            (ts.last().copied().unwrap_or(0) >= cut_end).then_some(())
        });
        std::thread::sleep(Duration::from_secs(2));
        let after = signal(&collector, "cut-01", "agent", t0).expect("agent signal");
        assert_eq!(after.1, 0, "backfilled time must not count as down: {after:?}");
        // What stays unknown is the time before the first batch (t0 is a second early), not the cut.
        assert!(after.2 < 3_000, "backfilled time is known now: {after:?}");
        let body = collector.api(&format!("/api/v1/uptime?host=cut-01&from={t0}"));
        let agent =
            body["hosts"][0]["signals"].as_array().expect("signals").iter().find(|s| s["signal"] == "agent").cloned();
        assert_eq!(agent.expect("agent")["availability"], 1.0);
    }

    /// T40 (b) and the collector's own downtime: agent and collector both stopped, the agent
    /// started first (nothing to backfill for that time): unknown, not down. Then the agent
    /// dies for good: past the grace its silence counts as down and opens an incident.
    #[test]
    fn collector_downtime_is_unknown_and_a_dead_agent_is_down() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "gone-01");
        let config_text = "[collector]\nagent_timeout_secs = 10\n[sla]\nsilence_grace_secs = 3\n";
        let collector = Collector::start(&data, config_text);
        let (grpc, http) = (collector.grpc, collector.http);
        let agent_config = "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n";
        let agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, agent_config);
        // A second back, so a query right away still has a window (from < to).
        let t0 = now_ms() - 1_000;
        collector.wait_for_load_points("gone-01", 3);
        agent.process.kill();
        collector.process.terminate(Duration::from_secs(10));
        std::thread::sleep(Duration::from_secs(20));
        let agent = Agent::start(dir.path(), &format!("http://{grpc}"), &token, 1, agent_config);
        std::thread::sleep(Duration::from_secs(2));
        let collector = Collector::start_on(&data, grpc, http, config_text);
        collector.wait_for_load_points("gone-01", 8);
        std::thread::sleep(Duration::from_secs(3));
        let (up, down, unknown, _) = signal(&collector, "gone-01", "agent", t0).expect("agent signal");
        assert_eq!(down, 0, "the collector's downtime is unknown, never down (up {up}, unknown {unknown})");
        assert!(unknown >= 5_000, "unknown {unknown}");

        agent.process.kill();
        let killed = now_ms();
        eventually("dead agent counted as down", Duration::from_secs(40), || {
            let (_, down, _, _) = signal(&collector, "gone-01", "agent", t0)?;
            (down >= 3_000).then_some(())
        });
        let incidents = collector.api(&format!("/api/v1/incidents?host=gone-01&from={t0}"));
        let open: Vec<&serde_json::Value> = incidents["incidents"]
            .as_array()
            .expect("incidents")
            .iter()
            .filter(|i| i["check"] == "agent" && i["end_ms"].is_null())
            .collect();
        assert_eq!(open.len(), 1, "{incidents}");
        assert_eq!(open[0]["severity"], "high");
        assert!(open[0]["start_ms"].as_i64().expect("start") >= killed, "{incidents}");
        // Uptime metrics are recomputed every 30 s.
        eventually("open incident in /metrics", Duration::from_secs(40), || {
            let metrics = collector.metrics();
            let open =
                b24watch_e2e::metric(&metrics, "b24watch_incidents_open", &[("host", "gone-01"), ("severity", "high")]);
            open.filter(|n| *n >= 1.0)
        });
        let metrics = collector.metrics();
        let ratio = b24watch_e2e::metric(
            &metrics,
            "b24watch_uptime_ratio",
            &[("host", "gone-01"), ("signal", "agent"), ("window", "1d")],
        )
        .expect("uptime ratio exposed");
        assert!(ratio < 1.0 && ratio > 0.0, "{ratio}");
        b24watch_e2e::promtool_check_metrics(&metrics).expect("promtool accepts the exposition");
    }

    fn chromium() -> std::path::PathBuf {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .expect("Chromium not installed: run `make test`, which installs Debian's chromium package")
    }

    /// The page as a real headless browser sees it (the DOM after parsing and layout).
    fn browser_dom(url: &str) -> String {
        let profile = tempfile::tempdir().expect("profile dir");
        let out = std::process::Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=2000", "--dump-dom"])
            .arg(url)
            .output()
            .expect("running chromium");
        assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A portal answering 502 is a critical incident with the right duration; acknowledgement
    /// gives the reaction time; maintenance over it removes the downtime; the report in HTML
    /// (seen by Chromium), CSV and JSON agrees with the API, and so does the status page.
    #[test]
    fn failing_portal_is_a_critical_incident_and_reports_agree_with_the_api() {
        let portal = Portal::start(None);
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("collector");
        let token = enroll(&data, "web-01");
        let collector = Collector::start(&data, COLLECTOR);
        let url = format!("http://127.0.0.1:{}/", portal.addr.port());
        let config = format!(
            "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n[probe]\ninterval_secs = 5\n\
             timeout_secs = 2\ntargets = [{{ url = \"{url}\" }}]\n"
        );
        let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
        // A second back, so a query right away still has a window (from < to).
        let t0 = now_ms() - 1_000;
        eventually("portal up", Duration::from_secs(20), || {
            signal(&collector, "web-01", "portal", t0).filter(|s| s.0 > 0)
        });
        portal.set_status(502);
        let failed_at = now_ms();
        std::thread::sleep(Duration::from_secs(12));
        portal.set_status(200);
        let incident = eventually("incident closed", Duration::from_secs(20), || {
            let body = collector.api(&format!("/api/v1/incidents?host=web-01&from={t0}"));
            body["incidents"]
                .as_array()?
                .iter()
                .find(|i| i["check"] == "portal_probe" && !i["end_ms"].is_null())
                .cloned()
        });
        assert_eq!(incident["severity"], "critical");
        assert_eq!(incident["reason"], "http_status");
        let (start, end) = (incident["start_ms"].as_i64().expect("start"), incident["end_ms"].as_i64().expect("end"));
        assert_eq!(incident["duration_ms"].as_i64(), Some(end - start));
        // Probes run every 5 s: the incident spans the 12 s of 502s, give or take one interval.
        assert!((7_000..=18_000).contains(&(end - start)), "duration {} ms", end - start);
        assert!(start >= failed_at, "{start} >= {failed_at}");
        let (_, down, _, _) = signal(&collector, "web-01", "portal", t0).expect("portal signal");
        assert!((end - start - 5_000..=end - start + 5_000).contains(&down), "down {down} vs incident {}", end - start);

        // Acknowledge: the reaction time is reported.
        let ack = format!(
            "{{\"host\":\"web-01\",\"check\":\"portal_probe\",\"target\":\"{url}\",\"start_ms\":{start},\"by\":\"duty\"}}"
        );
        let (status, body) = b24watch_e2e::http_post(collector.http, "/api/v1/incidents/ack", &ack).expect("ack");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"acknowledged\":true"), "{body}");

        let month = jiff_month(now_ms());
        let json = collector.api(&format!("/reports/sla?month={month}&format=json&host=web-01"));
        let host = &json["hosts"][0];
        assert_eq!(host["sla_signal"], "portal");
        let api_incidents = collector.api(&format!("/api/v1/incidents?host=web-01&from={}", json["from_ms"]));
        assert_eq!(host["incidents"], api_incidents["incidents"], "report and API disagree");
        assert_eq!(host["incidents_by_severity"]["critical"]["count"], 1);
        assert!(host["incidents_by_severity"]["critical"]["mean_reaction_ms"].as_i64().is_some());
        let api_portal =
            signal(&collector, "web-01", "portal", json["from_ms"].as_i64().expect("from")).expect("portal");
        assert_eq!(host["totals"]["down_ms"].as_i64(), Some(api_portal.1));

        let (status, csv) =
            b24watch_e2e::http_get(collector.http, &format!("/reports/sla?month={month}&format=csv")).expect("csv");
        assert_eq!(status, 200);
        let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
        let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
        assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
        let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
        let portal_row =
            rows.iter().find(|r| r[col("kind")] == "uptime" && r[col("signal")] == "portal").expect("portal row");
        assert_eq!(portal_row[col("down_ms")].parse::<i64>().ok(), host["totals"]["down_ms"].as_i64());
        assert_eq!(rows.iter().filter(|r| r[col("kind")] == "incident" && r[col("severity")] == "critical").count(), 1);

        let dom = browser_dom(&format!("http://{}/reports/sla?month={month}&format=html", collector.http));
        assert!(dom.contains("data-host=\"web-01\""), "{dom}");
        assert!(dom.contains("<td>critical</td><td>portal_probe</td>"), "{dom}");
        let status_dom = browser_dom(&format!("http://{}/", collector.http));
        assert!(status_dom.contains("data-host=\"web-01\""), "{status_dom}");
        assert!(status_dom.contains(">up<"), "{status_dom}");

        // Maintenance over the outage: not downtime any more; deleting the window restores it.
        let window = format!(
            "{{\"host\":\"web-01\",\"from\":{},\"to\":{},\"reason\":\"planned\"}}",
            start - 10_000,
            end + 10_000
        );
        let (status, body) =
            b24watch_e2e::http_post(collector.http, "/api/v1/maintenance", &window).expect("maintenance");
        assert_eq!(status, 201, "{body}");
        let id: serde_json::Value = serde_json::from_str(&body).expect("json");
        let (_, down, _, maintenance) = signal(&collector, "web-01", "portal", t0).expect("portal");
        assert_eq!(down, 0);
        assert!(maintenance >= end - start, "{maintenance}");
        // Narrowed to the first half of the outage: the rest is downtime again.
        let half = format!(
            "{{\"host\":\"web-01\",\"from\":{},\"to\":{},\"reason\":\"planned\"}}",
            start - 10_000,
            start + (end - start) / 2
        );
        let (status, body) =
            b24watch_e2e::http_request(collector.http, "PUT", &format!("/api/v1/maintenance/{}", id["id"]), &half)
                .expect("update");
        assert_eq!(status, 200, "{body}");
        let (_, down_after, _, _) = signal(&collector, "web-01", "portal", t0).expect("portal");
        assert!(down_after > 0 && down_after < end - start + 5_000, "{down_after}");
        let windows = collector.api("/api/v1/maintenance");
        assert_eq!(windows["windows"].as_array().map(Vec::len), Some(1), "{windows}");
        let (status, _) =
            b24watch_e2e::http_request(collector.http, "DELETE", &format!("/api/v1/maintenance/{}", id["id"]), "")
                .expect("delete");
        assert_eq!(status, 204);
        assert!(signal(&collector, "web-01", "portal", t0).expect("portal").1 > 0);
        let (status, _) = b24watch_e2e::http_post(collector.http, "/api/v1/maintenance", "{\"from\": 5}").expect("bad");
        assert_eq!(status, 400);

        // The CLI writes the same JSON report.
        let out =
            b24watch_e2e::collector_cmd(&data, &["report", "--month", &month, "--format", "json", "--host", "web-01"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(cli["hosts"][0]["incidents"][0]["start_ms"], start);
    }

    /// `YYYY-MM` of a unix ms time in UTC.
    fn jiff_month(ms: i64) -> String {
        let days = ms.div_euclid(86_400_000);
        // Civil from days (H. Hinnant).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!("{year:04}-{month:02}")
    }
}
