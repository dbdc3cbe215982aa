//! Issue #19 items 7–9: the report and the status page as a client reads them: in Russian and in
//! English (rendered by headless Chromium), every time in the contract's zone with the zone named
//! (checked on a month with a daylight-saving change), figures that explain themselves.
//!
//! Expected times come from an oracle of the EU summer-time rule written here (last Sunday of
//! March and of October, 01:00 UTC), not from the collector's time-zone library.

use std::time::Duration;

use b24watch_e2e::portal::Portal;
use b24watch_e2e::{Agent, Collector, browser_dom, enroll, eventually, now_ms};

const SEC: i64 = 1_000;
const HOUR: i64 = 3_600 * SEC;
const DAY: i64 = 24 * HOUR;

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The civil date of a day number (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The EU clock change of `month` (3 or 10) of `year`: its last Sunday, 01:00 UTC, unix ms.
fn eu_switch(year: i64, month: i64) -> i64 {
    let last = days_from_civil(year, month + 1, 1) - 1;
    let weekday = (last + 4).rem_euclid(7); // 1970-01-01 was a Thursday; 0 = Sunday
    (last - weekday) * DAY + HOUR
}

/// Berlin's civil time of `ms`: (year, month, day, hour, minute, second, zone name, UTC offset h).
fn berlin(ms: i64) -> (i64, i64, i64, i64, i64, i64, &'static str, i64) {
    let (year, _, _) = civil_from_days(ms.div_euclid(DAY));
    let summer = ms >= eu_switch(year, 3) && ms < eu_switch(year, 10);
    let (name, offset) = if summer { ("CEST", 2) } else { ("CET", 1) };
    let local = (ms + offset * HOUR).div_euclid(SEC);
    let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    (y, mo, d, s / 3600, s / 60 % 60, s % 60, name, offset)
}

/// A time as the page in `lang` prints it in Berlin.
fn printed(lang: &str, ms: i64) -> String {
    let (y, mo, d, h, mi, s, name, _) = berlin(ms);
    match lang {
        "ru" => format!("{d:02}.{mo:02}.{y} {h:02}:{mi:02}:{s:02} {name}"),
        _ => format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} {name}"),
    }
}

/// ISO 8601 with Berlin's offset.
fn iso(ms: i64) -> String {
    let (y, mo, d, h, mi, s, _, offset) = berlin(ms);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+{offset:02}:00")
}

/// A duration under an hour as the page prints it.
fn printed_duration(lang: &str, ms: i64) -> String {
    let (m, s) = (ms / 60_000, ms / 1000 % 60);
    match (lang, m) {
        ("ru", 0) => format!("{s}\u{a0}с"),
        ("ru", _) => format!("{m}\u{a0}мин {s}\u{a0}с"),
        (_, 0) => format!("{s}s"),
        _ => format!("{m}m {s}s"),
    }
}

/// Chromium's DOM with no-break spaces as characters.
fn dom(url: &str) -> String {
    browser_dom(url).replace("&nbsp;", "\u{a0}")
}

/// The text of the first element of `html` whose class attribute is exactly `class`.
fn cell<'a>(html: &'a str, class: &str) -> &'a str {
    let start = html.find(&format!("class=\"{class}\">")).unwrap_or_else(|| panic!("no .{class} in {html}"));
    let rest = &html[start..];
    let text = &rest[rest.find('>').expect("tag end") + 1..];
    &text[..text.find('<').expect("cell end")]
}

const CONFIG: &str = "[collector]\nagent_timeout_secs = 10\n[sla]\nsilence_grace_secs = 60\ntarget = 0.999\n\
                      timezone = \"Europe/Berlin\"\nlanguage = \"ru\"\n";

#[test]
fn report_and_status_page_read_in_the_contracts_zone_and_language() {
    assert_eq!(eu_switch(2026, 3), 1_774_746_000_000, "oracle: summer time began 2026-03-29 01:00 UTC");
    assert_eq!(eu_switch(2026, 10), 1_792_890_000_000, "oracle: it ended 2026-10-25 01:00 UTC");
    let portal = Portal::start(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("collector");
    let before_enrolment = now_ms();
    let token = enroll(&data, "bx-01");
    let collector = Collector::start(&data, CONFIG);
    let url = format!("http://127.0.0.1:{}/", portal.addr.port());
    let config = format!(
        "[logs]\nenabled = false\n[mysql]\nenabled = false\n[services]\nenabled = false\n[probe]\ninterval_secs = 5\n\
         timeout_secs = 2\ntargets = [{{ url = \"{url}\" }}]\n"
    );
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    eventually("portal up", Duration::from_secs(20), || {
        let body = collector.api(&format!("/api/v1/uptime?host=bx-01&from={}", now_ms() - 60_000));
        let signals = body["hosts"][0]["signals"].as_array()?.clone();
        signals.iter().find(|s| s["signal"] == "portal" && s["up_ms"].as_i64() > Some(0)).cloned()
    });
    portal.set_status(502);
    std::thread::sleep(Duration::from_secs(12));
    portal.set_status(200);
    let incident = eventually("incident closed", Duration::from_secs(20), || {
        let body = collector.api(&format!("/api/v1/incidents?host=bx-01&from={before_enrolment}"));
        body["incidents"].as_array()?.iter().find(|i| i["check"] == "portal_probe" && !i["end_ms"].is_null()).cloned()
    });
    let (start, end) = (incident["start_ms"].as_i64().expect("start"), incident["end_ms"].as_i64().expect("end"));
    let ack = format!("{{\"id\":{},\"by\":\"duty\"}}", incident["id"]);
    let (status, body) = b24watch_e2e::http_post(collector.http, "/api/v1/incidents/ack", &ack).expect("ack");
    assert_eq!(status, 200, "{body}");
    let acked = collector.api(&format!("/api/v1/incidents?host=bx-01&from={before_enrolment}"));
    let reaction = acked["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .find(|i| i["id"] == incident["id"])
        .and_then(|i| i["reaction_ms"].as_i64())
        .expect("reaction");

    let (y, mo, ..) = berlin(now_ms());
    let month = format!("{y}-{mo:02}");
    let base = format!("http://{}/reports/sla?month={month}&host=bx-01", collector.http);

    // JSON: identifiers unchanged, figures that explain themselves added.
    let json = collector.api(&format!("/reports/sla?month={month}&host=bx-01&format=json"));
    let host = &json["hosts"][0];
    assert_eq!(host["sla_signal"], "portal");
    assert_eq!(host["sla_signal_target"], url.as_str());
    assert_eq!(host["incidents"][0]["check"], "portal_probe");
    assert_eq!(host["incidents"][0]["reason"], "http_status");
    let monitored_from = host["monitored_from_ms"].as_i64().expect("monitored_from_ms");
    assert!(monitored_from >= before_enrolment, "judged from the enrolment on: {host}");
    assert!(
        host["totals"]["unknown_ms"].as_i64().expect("unknown") < 60_000,
        "time before the host was monitored is not unknown: {host}"
    );
    let critical = &host["incidents_by_severity"]["critical"];
    assert_eq!(
        (critical["mean_reaction_ms"].as_i64(), critical["worst_reaction_ms"].as_i64()),
        (Some(reaction), Some(reaction))
    );
    assert!(host["downtime_budget_left_ms"].as_i64().expect("budget") < 0, "12 s down misses 99.9 %: {host}");
    assert_eq!(json["from_iso"], iso(json["from_ms"].as_i64().expect("from")));

    // CSV: ISO 8601 times with the offset, availability as a percentage.
    let (status, csv) =
        b24watch_e2e::http_get(collector.http, &format!("/reports/sla?month={month}&format=csv")).expect("csv");
    assert_eq!(status, 200);
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} column"));
    let row = rows.iter().find(|r| r[col("kind")] == "incident").expect("incident row");
    assert_eq!((row[col("check")], row[col("reason")]), ("portal_probe", "http_status"));
    assert_eq!((row[col("start_at")], row[col("end_at")]), (iso(start).as_str(), iso(end).as_str()));
    let uptime = rows.iter().find(|r| r[col("kind")] == "uptime" && r[col("signal")] == "portal").expect("uptime row");
    let ratio: f64 = uptime[col("availability")].parse().expect("ratio");
    let percent: f64 = uptime[col("availability_percent")].parse().expect("percent");
    assert!((ratio * 100.0 - percent).abs() < 0.002, "{ratio} vs {percent} %");
    assert_eq!(uptime[col("sla_target_percent")], "99.900");

    // HTML as Chromium renders it: the configured language, then `lang=en`.
    for (query, lang) in [("", "ru"), ("&lang=en", "en")] {
        let html = dom(&format!("{base}&format=html{query}"));
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{html}");
        assert!(html.contains("Europe/Berlin"), "the zone is named: {html}");
        for ms in [start, end] {
            assert!(html.contains(&printed(lang, ms)), "{} in Berlin time: {html}", printed(lang, ms));
        }
        let words: &[&str] = if lang == "ru" {
            &[
                "Доступность портала",
                "портал ответил кодом ошибки HTTP",
                "Время реакции по приоритетам",
                "наблюдается с",
                "превышен на",
            ]
        } else {
            &[
                "Portal availability",
                "the portal answered with an HTTP error status",
                "Reaction by priority",
                "monitored since",
                "exceeded by",
            ]
        };
        for word in words {
            assert!(html.contains(word), "{word:?} in {html}");
        }
        assert!(
            !html.contains(">portal_probe<") && !html.contains(">http_status<"),
            "identifiers are not text: {html}"
        );
        assert!(!cell(&html, "availability bad").is_empty(), "below the target is coloured: {html}");
        let critical_row = &html[html.find("<tr class=\"critical\">").expect("reaction row")..];
        assert_eq!(cell(critical_row, "worst"), printed_duration(lang, reaction), "{html}");
        assert_eq!(cell(critical_row, "mean"), printed_duration(lang, reaction), "{html}");
    }

    // A month with a daylight-saving change: it starts in winter time and ends in summer time.
    let march = dom(&format!("http://{}/reports/sla?month=2026-03&format=html", collector.http));
    assert!(march.contains("Период с 01.03.2026 00:00:00 CET по 01.04.2026 00:00:00 CEST."), "{march}");
    let march = dom(&format!("http://{}/reports/sla?month=2026-03&format=html&lang=en", collector.http));
    assert!(march.contains("Period from 2026-03-01 00:00:00 CET to 2026-04-01 00:00:00 CEST."), "{march}");

    // The status page: last data in Berlin time, the signal named, percentages against the target.
    for (query, lang) in [("", "ru"), ("?lang=en", "en")] {
        let before = now_ms();
        let html = dom(&format!("http://{}/{query}", collector.http));
        let after = now_ms();
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{html}");
        let seen = cell(&html, "last-seen");
        assert!(
            // Every whole second of the window, its last one included (data may arrive while the
            // page is fetched).
            ((before - 30 * SEC) / 1000..=after / 1000).any(|s| printed(lang, s * 1000) == seen),
            "last data {seen:?} is a recent Berlin time: {html}"
        );
        let (state, signal) = if lang == "ru" {
            ("на связи", "Доступность портала")
        } else {
            ("up", "Portal availability")
        };
        assert!(html.contains(&format!(">{state}<")), "{html}");
        assert!(html.contains(&format!("{signal} ({url})")), "which signal the figures are for: {html}");
        assert!(html.contains("<td class=\"bad\">"), "a window below the target is red: {html}");
        assert!(html.contains(&format!("&amp;lang={lang}\"")), "links keep the language: {html}");
    }
    let (status, body) = b24watch_e2e::http_get(collector.http, "/?lang=de").expect("bad lang");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected \\\"en\\\" or \\\"ru\\\""), "{body}");
}
