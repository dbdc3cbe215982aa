//! Issue #18: the preventive checks (backups, database upkeep, versions) against real things: a
//! MariaDB of the test's own with MyISAM tables, a bloated table and a big `b_event_log`, backup
//! archives laid out as Bitrix and BitrixVM write them, and core version files.

use std::path::Path;
use std::time::Duration;

use b24watch_e2e::mariadb::{BITRIX_SCHEMA, MariaDb};
use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

/// `sitemanager`: a MyISAM table, a MyISAM table with most rows deleted (DATA_FREE) and a big
/// audit log; `healthy`: a small InnoDB database.
fn load_databases(db: &MariaDb) {
    for name in ["sitemanager", "healthy"] {
        db.sql(&format!("CREATE DATABASE {name}; USE {name}; {BITRIX_SCHEMA}"));
    }
    db.sql(
        "USE sitemanager;
         CREATE TABLE b_search_legacy (ID int NOT NULL PRIMARY KEY, BODY text) ENGINE=MyISAM;
         INSERT INTO b_search_legacy SELECT seq, REPEAT('x', 100) FROM seq_1_to_100;
         CREATE TABLE b_crm_timeline_bloat (ID int NOT NULL PRIMARY KEY, BODY varchar(2000)) ENGINE=MyISAM;
         INSERT INTO b_crm_timeline_bloat SELECT seq, REPEAT('t', 2000) FROM seq_1_to_3000;
         DELETE FROM b_crm_timeline_bloat WHERE ID > 100;
         INSERT INTO b_event_log(TIMESTAMP_X, SEVERITY, AUDIT_TYPE_ID, MODULE_ID, ITEM_ID, DESCRIPTION)
           SELECT NOW() - INTERVAL seq MINUTE, 'SECURITY', 'USER_AUTHORIZE', 'main', seq, REPEAT('d', 3000)
           FROM seq_1_to_3000;
         ANALYZE TABLE b_event_log;",
    );
}

fn write_site(root: &Path, db: &MariaDb, database: &str, core: (&str, &str)) {
    let conf = root.join("bitrix/php_interface");
    std::fs::create_dir_all(&conf).expect("site dir");
    std::fs::write(
        conf.join("dbconn.php"),
        format!(
            "<?\n$DBType = \"mysql\";\n$DBHost = \"localhost:{}\";\n$DBLogin = 'root';\n$DBPassword = '';\n$DBName = \"{database}\";\n?>",
            db.socket.display()
        ),
    )
    .expect("dbconn");
    // As the update system writes it: short open tag, double quotes.
    let version = root.join("bitrix/modules/main/classes/general/version.php");
    std::fs::create_dir_all(version.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &version,
        format!("<?\ndefine(\"SM_VERSION\",\"{}\");\ndefine(\"SM_VERSION_DATE\",\"{}\");\n?>", core.0, core.1),
    )
    .expect("version.php");
}

/// Writes an archive of `size` bytes that is `age_hours` old.
fn archive(path: &Path, size: usize, age_hours: u64) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, vec![0x1f; size]).expect("archive");
    let mtime = std::time::SystemTime::now() - Duration::from_secs(age_hours * 3600);
    std::fs::File::options().write(true).open(path).expect("open").set_modified(mtime).expect("mtime");
}

/// Acceptance 1 (backups, database upkeep, versions): each finding arrives at the collector with
/// its severity, the healthy site passes, the series are exposed with bounded labels.
#[test]
fn backups_database_upkeep_and_versions_are_judged_on_real_files_and_a_real_mariadb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = MariaDb::start(&dir.path().join("db"));
    load_databases(&db);
    let www = dir.path().join("sites/www");
    let healthy = dir.path().join("sites/ext_www/healthy.example.com");
    // The default site runs a core released in 2020, the other a current one.
    write_site(&www, &db, "sitemanager", ("20.200.300", "2020-12-01 10:00:00"));
    let today = b24watch_e2e::now_ms() / 1000 - 5 * 86_400;
    let (y, m, d) = civil(today);
    write_site(&healthy, &db, "healthy", ("25.100.0", &format!("{y:04}-{m:02}-{d:02} 10:00:00")));
    // Bitrix backups of the default site: a multi-part one 3 days old (stale at 36 h).
    let backup = www.join("bitrix/backup");
    archive(&backup.join("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz"), 4000, 72);
    archive(&backup.join("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz.1"), 1000, 71);
    // BitrixVM backups of the healthy site: fresh, but the newest is truncated.
    let vm = dir.path().join("backup/archive");
    archive(&vm.join("www_backup_healthy_14.01.2024_a1b2c3d4.tar.gz"), 9000, 26);
    archive(&vm.join("www_backup_healthy_15.01.2024_q1w2e3r4.tar.gz"), 1200, 2);
    let crontab = dir.path().join("crontab");
    std::fs::write(
        &crontab,
        format!("SHELL=/bin/bash\n10 22 * * * bitrix /opt/webdir/bin/bx_backup.sh healthy {}\n", vm.display()),
    )
    .expect("crontab");
    // A stand-in PHP CLI of an unsupported version (the agent runs `php -n -r 'echo PHP_VERSION;'`).
    let php = dir.path().join("php");
    std::fs::write(&php, "#!/bin/sh\nprintf 7.4.33\n").expect("php");
    std::fs::set_permissions(&php, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");

    let data = dir.path().join("collector");
    let token = enroll(&data, "bx-18");
    let collector = Collector::start(&data, "");
    let config = format!(
        "[logs]\nenabled = false\n[services]\nenabled = false\n[mysql]\nsockets = [\"{sock}\"]\ninterval_secs = 5\n\
         [bitrix]\nsite_roots = [\"{root}/sites/www\", \"{root}/sites/ext_www/*\"]\ninterval_secs = 60\n\
         [backup]\ncrontabs = [\"{crontab}\"]\n\
         [database]\nreclaimable_max_mib = 2\nlog_table_max_mib = 4\ntop_tables = 3\n\
         [versions]\nphp_binary = \"{php}\"\n",
        sock = db.socket.display(),
        root = dir.path().display(),
        crontab = crontab.display(),
        php = php.display(),
    );
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let host = "bx-18";
    eventually("preventive checks of both sites", Duration::from_secs(40), || {
        collector.check_status(host, "db_engine", "healthy.example.com")?;
        collector.check_status(host, "php_version", "php")?;
        collector.check_status(host, "backup_space", "healthy.example.com")?;
        collector.check_status(host, "bitrix_core_age", "default")
    });
    let expect = |name: &str, target: &str, want: (&str, &str, &str)| {
        assert_eq!(
            collector.check_status(host, name, target),
            Some((want.0.to_owned(), want.1.to_owned(), want.2.to_owned())),
            "{name} on {target}; all checks: {}",
            collector.api(&format!("/api/v1/hosts/{host}/checks"))
        );
    };
    expect("backup_age", "default", ("failed", "stale", "high"));
    expect("backup_age", "healthy.example.com", ("ok", "", "high"));
    expect("backup_size", "healthy.example.com", ("failed", "shrunk", "medium"));
    expect("backup_space", "default", ("ok", "", "medium"));
    expect("db_engine", "default", ("failed", "not_innodb", "low"));
    expect("db_reclaimable", "default", ("failed", "reclaimable", "low"));
    expect("db_log_tables", "default", ("failed", "log_table_large", "low"));
    for name in ["db_engine", "db_reclaimable", "db_log_tables"] {
        expect(name, "healthy.example.com", ("ok", "", "low"));
    }
    expect("bitrix_core_age", "default", ("failed", "outdated", "low"));
    expect("bitrix_core_age", "healthy.example.com", ("ok", "", "low"));
    expect("php_version", "php", ("failed", "unsupported", "medium"));
    // The harness's MariaDB (10.11 on Debian 12) is supported.
    expect("mysql_version", "mysql", ("ok", "", "medium"));

    let body = collector.metrics();
    let labels = |site: &'static str, kind: &'static str| [("host", host), ("site", site), ("kind", kind)];
    assert_eq!(metric(&body, "b24watch_backup_last_size_bytes", &labels("default", "bitrix")), Some(5000.0), "{body}");
    assert_eq!(
        metric(&body, "b24watch_backup_last_size_bytes", &labels("healthy.example.com", "bitrixvm")),
        Some(1200.0)
    );
    assert_eq!(
        metric(&body, "b24watch_backup_previous_size_bytes", &labels("healthy.example.com", "bitrixvm")),
        Some(9000.0)
    );
    let site = |s: &'static str| [("host", host), ("site", s)];
    assert_eq!(metric(&body, "b24watch_db_non_innodb_tables", &site("default")), Some(2.0));
    assert_eq!(metric(&body, "b24watch_db_non_innodb_tables", &site("healthy.example.com")), Some(0.0));
    let log = metric(
        &body,
        "b24watch_db_log_table_size_bytes",
        &[("host", host), ("site", "default"), ("table", "b_event_log")],
    )
    .expect("b_event_log size");
    assert!(log > 4.0 * 1024.0 * 1024.0, "b_event_log is {log} bytes");
    let tables = body
        .lines()
        .filter(|l| l.starts_with("b24watch_db_table_size_bytes{") && l.contains("site=\"default\""))
        .count();
    assert_eq!(tables, 3, "top_tables bounds the table label");
    assert_eq!(
        metric(&body, "b24watch_bitrix_core_info", &[("host", host), ("site", "default"), ("version", "20.200.300")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&body, "b24watch_php_version_info", &[("host", host), ("version", "7.4.33"), ("supported", "no")]),
        Some(1.0)
    );
    let size = metric(&body, "b24watch_db_size_bytes", &site("default")).expect("database size");
    assert!(size > log, "database {size} includes the log {log}");
    b24watch_e2e::promtool_check_metrics(&body).expect("promtool accepts the exposition");

    // The report's preventive section shows the new checks and the month's figures.
    let report = collector.api(&format!("/reports/sla?host={host}&format=json"));
    let text = report.to_string();
    for needle in ["backup_age", "db_log_tables", "php_version", "backup_last_size_bytes", "db_size_bytes"] {
        assert!(text.contains(needle), "report lacks {needle}: {text}");
    }
    // The CSV has the same preventive section: the latest result of each check and the month's
    // database and backup figures, in columns appended after the resource columns.
    let (status, csv) =
        b24watch_e2e::http_get(collector.http, &format!("/reports/sla?host={host}&format=csv")).expect("csv");
    assert_eq!(status, 200, "{csv}");
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    assert_eq!(header.len(), 48, "22 base, 5 for people, 13 resource, 8 preventive columns: {header:?}");
    assert_eq!(&header[40..], ["figure", "labels", "first", "last", "change", "min", "max", "status"]);
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} column"));
    let check = |name: &str, target: &str| {
        rows.iter()
            .find(|r| r[col("kind")] == "check" && r[col("check")] == name && r[col("target")] == target)
            .map(|r| (r[col("status")], r[col("reason")], r[col("severity")]))
    };
    assert_eq!(check("backup_age", "default"), Some(("failed", "stale", "high")), "{csv}");
    assert_eq!(check("db_engine", "healthy.example.com"), Some(("ok", "", "low")), "{csv}");
    assert_eq!(check("php_version", "php"), Some(("failed", "unsupported", "medium")), "{csv}");
    let figure = |series: &str, labels: &str| {
        rows.iter()
            .find(|r| r[col("kind")] == "figure" && r[col("figure")] == series && r[col("labels")] == labels)
            .map(|r| r[col("last")].parse::<f64>().expect("last is a number"))
    };
    let near = |got: Option<f64>, want: f64| got.is_some_and(|v| (v - want).abs() <= want * 1e-9);
    assert!(near(figure("backup_last_size_bytes", "kind=bitrix;site=default"), 5000.0), "{csv}");
    assert!(near(figure("db_size_bytes", "site=default"), size), "{csv}");
}

/// `(year, month, day)` of unix seconds (UTC).
fn civil(secs: i64) -> (i64, i64, i64) {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
