//! Issue #4: the portal probe against a real HTTP(S) server on loopback.

use std::time::Duration;

use b24watch_e2e::portal::Portal;
use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

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
        let plain = collector.check_status(host, "portal_probe", &plain_url)?;
        let tls = collector.check_status(host, "portal_probe", &tls_url)?;
        (plain.0 == "ok" && tls.0 == "ok").then_some(())
    });
    assert_eq!(
        collector.check_status(host, "tls_certificate", &tls_url),
        Some(("failed".into(), "expiring".into(), "low".into()))
    );
    let body = collector.metrics();
    let expiry = metric(&body, "b24watch_probe_tls_expiry_timestamp_seconds", &[("host", host), ("target", &tls_url)]);
    assert_eq!(expiry, Some(not_after.unix_timestamp() as f64), "{body}");
    assert_eq!(metric(&body, "b24watch_probe_http_status", &[("host", host), ("target", &plain_url)]), Some(200.0));

    http.set_status(502);
    eventually("502 is a critical failure", Duration::from_secs(20), || {
        collector.check_status(host, "portal_probe", &plain_url).filter(|c| c.0 == "failed")
    });
    assert_eq!(
        collector.check_status(host, "portal_probe", &plain_url),
        Some(("failed".into(), "http_status".into(), "critical".into()))
    );
    assert_eq!(
        metric(&collector.metrics(), "b24watch_probe_success", &[("host", host), ("target", &plain_url)]),
        Some(0.0)
    );

    http.set_status(200);
    *http.body.lock().expect("body") = "<html>maintenance</html>".into();
    eventually("keyword missing", Duration::from_secs(20), || {
        collector.check_status(host, "portal_probe", &plain_url).filter(|c| c.1 == "keyword_missing")
    });

    drop(http);
    eventually("portal down", Duration::from_secs(20), || {
        collector.check_status(host, "portal_probe", &plain_url).filter(|c| c.1 == "down")
    });
}
