//! Issue #18: a backup directory on a nearly full filesystem (a real 1 MiB tmpfs, mounted as root)
//! fails `backup_space`; the agent reads the free space with statvfs like any other filesystem.

use std::process::Command;
use std::time::Duration;

use b24watch_e2e::{Agent, Collector, enroll, eventually, metric};

/// Unmounts the tmpfs when the test ends, whatever happens.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn backups_on_a_nearly_full_filesystem_fail_the_space_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("bitrix/php_interface")).expect("site");
    std::fs::write(
        root.join("bitrix/php_interface/dbconn.php"),
        "<?\n$DBHost = \"localhost\";\n$DBLogin = 'bitrix0';\n$DBPassword = '';\n$DBName = \"sitemanager\";\n?>",
    )
    .expect("dbconn");
    let backup = root.join("bitrix/backup");
    std::fs::create_dir_all(&backup).expect("backup dir");
    let status =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&backup).status().expect("mount");
    assert!(status.success(), "mount -t tmpfs needs root");
    let _mount = Mount(backup.clone());
    // A fresh 700 KiB Bitrix backup: about 300 KiB stay free, less than the next one needs.
    std::fs::write(backup.join("20240115_031500_full_a1B2c3D4e5F6g7H8.tar.gz"), vec![0x1f; 700 * 1024])
        .expect("archive");

    let data = dir.path().join("collector");
    let token = enroll(&data, "bx-full");
    let collector = Collector::start(&data, "");
    let config = format!(
        "[logs]\nenabled = false\n[services]\nenabled = false\n[mysql]\nenabled = false\n\
         [bitrix]\nsite_roots = [\"{}\"]\n[backup]\ncrontabs = []\n",
        root.display()
    );
    let _agent = Agent::start(dir.path(), &collector.grpc_url(), &token, 1, &config);
    let got = eventually("backup_space result", Duration::from_secs(30), || {
        collector.check_status("bx-full", "backup_space", "default")
    });
    assert_eq!(got, ("failed".to_owned(), "no_room".to_owned(), "medium".to_owned()));
    let avail = metric(
        &collector.metrics(),
        "b24watch_backup_filesystem_avail_bytes",
        &[("host", "bx-full"), ("site", "default"), ("kind", "bitrix")],
    )
    .expect("free space series");
    assert!(avail < 700.0 * 1024.0, "{avail} bytes free on the 1 MiB tmpfs");
    assert_eq!(collector.check_status("bx-full", "backup_age", "default").map(|c| c.0), Some("ok".to_owned()));
}
