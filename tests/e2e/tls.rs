//! Issue #5: TLS and mutual TLS between agent and collector (RELIABILITY.md T31).

use std::time::Duration;

use b24watch_e2e::{Agent, Collector, enroll, eventually, write_pki};

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
    let bad = Agent::start(&bad_dir, &url, &bad_token, 1, &format!("[tls]\nca_file = \"{}/ca.pem\"\n", pki.display()));
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
