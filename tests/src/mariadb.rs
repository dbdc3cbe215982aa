//! A real MariaDB server owned by one test: its own datadir, unix socket and loopback port, so a
//! test can stop, pause (SIGSTOP) and restart it. Needs `mariadb-install-db`, `mariadbd` and the
//! `mariadb` client (Debian's `mariadb-server`; `scripts/install-test-deps.sh` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{ProcessGuard, eventually, free_port};

/// A MariaDB server started by the test harness.
#[derive(Debug)]
pub struct MariaDb {
    /// Working directory (datadir, socket, log).
    pub dir: PathBuf,
    /// Unix socket path.
    pub socket: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    process: Option<ProcessGuard>,
}

fn find(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!("none of {names:?} found: install mariadb-server (scripts/install-test-deps.sh does)");
}

impl MariaDb {
    /// Initialises a datadir under `dir` and starts the server; root logs in over the socket
    /// without a password.
    ///
    /// # Panics
    /// When initialisation or start fails (the server log is in the message).
    pub fn start(dir: &Path) -> MariaDb {
        let datadir = dir.join("data");
        std::fs::create_dir_all(&datadir).expect("datadir");
        let out = Command::new(find(&["mariadb-install-db", "mysql_install_db"]))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--user={}", whoami()))
            .output()
            .expect("running mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Socket paths are limited to ~107 bytes: keep it short.
        let socket = dir.join("my.sock");
        let mut db = MariaDb { dir: dir.to_path_buf(), socket, port: free_port(), process: None };
        db.restart();
        db
    }

    /// Starts the server again on the same datadir, socket and port (after [`MariaDb::stop`]).
    ///
    /// # Panics
    /// When it does not accept connections within 30 s.
    pub fn restart(&mut self) {
        let mut cmd = Command::new(find(&["mariadbd", "mysqld"]));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", self.dir.join("mariadb.pid").display()))
            .arg(format!("--user={}", whoami()))
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--skip-log-bin")
            // What BitrixVM's my.cnf sets (BITRIX.md): empty sql_mode, innodb_strict_mode off.
            .arg("--sql-mode=")
            .arg("--innodb-strict-mode=OFF")
            .arg("--max-connections=50");
        self.process = Some(ProcessGuard::spawn("mariadbd", cmd, &self.dir.join("mariadb.log")));
        eventually("MariaDB accepting connections", Duration::from_secs(30), || self.try_sql("SELECT 1").ok());
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.terminate(Duration::from_secs(30));
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: connections hang, nothing is refused.
    pub fn pause(&self, frozen: bool) {
        if let Some(process) = &self.process {
            process.signal(if frozen { rustix::process::Signal::STOP } else { rustix::process::Signal::CONT });
        }
    }

    /// Runs SQL as root; returns tab-separated output.
    ///
    /// # Panics
    /// When the statement fails.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql).unwrap_or_else(|err| panic!("SQL failed: {err}\n{sql}"))
    }

    /// Runs SQL as root.
    ///
    /// # Errors
    /// The client's error output.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.sql_as("root", "", sql)
    }

    /// Runs SQL as `user` with `password` over the socket.
    ///
    /// # Errors
    /// The client's error output.
    pub fn sql_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(find(&["mariadb", "mysql"]))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--user={user}"))
            .arg(format!("--password={password}"))
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("--connect-timeout=5")
            .arg("-e")
            .arg(sql)
            .output()
            .map_err(|err| err.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

fn whoami() -> String {
    let uid = rustix::process::getuid();
    if uid.is_root() {
        return "root".into();
    }
    std::env::var("USER").unwrap_or_else(|_| uid.as_raw().to_string())
}

/// A subset of the Bitrix schema: the tables the agent reads, with their real column types
/// (shared with `scripts/bench-agent.sh`).
pub const BITRIX_SCHEMA: &str = include_str!("../../scripts/bitrix-schema.sql");
