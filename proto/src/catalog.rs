//! Every series the agent emits: name (without the `b24watch_` prefix), type and help text.
//!
//! Series names are part of the contract: the collector exposes them as `b24watch_<name>` with a
//! `host` label, dashboards and alert rules refer to them. Names are only ever added.

use crate::v1::MetricKind;

/// Describes one series family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Name without the `b24watch_` prefix.
    pub name: &'static str,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// One-line help text for `# HELP`.
    pub help: &'static str,
    /// Label names besides `host`.
    pub labels: &'static [&'static str],
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Descriptor {
    Descriptor { name, kind: MetricKind::Gauge, help, labels }
}

const fn counter(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Descriptor {
    Descriptor { name, kind: MetricKind::Counter, help, labels }
}

/// Host sampler: CPU.
pub const CPU_USAGE_RATIO: &str = "cpu_usage_ratio";
/// Host sampler: CPU time share by mode.
pub const CPU_MODE_RATIO: &str = "cpu_mode_ratio";
/// Host sampler: number of CPUs.
pub const CPU_CORES: &str = "cpu_cores";
/// Host sampler: load averages.
pub const LOAD1: &str = "load1";
/// Host sampler: load average over 5 minutes.
pub const LOAD5: &str = "load5";
/// Host sampler: load average over 15 minutes.
pub const LOAD15: &str = "load15";
/// Host sampler: memory.
pub const MEMORY_TOTAL_BYTES: &str = "memory_total_bytes";
/// Host sampler: memory available for new work without swapping.
pub const MEMORY_AVAILABLE_BYTES: &str = "memory_available_bytes";
/// Host sampler: swap size.
pub const SWAP_TOTAL_BYTES: &str = "swap_total_bytes";
/// Host sampler: free swap.
pub const SWAP_FREE_BYTES: &str = "swap_free_bytes";
/// Host sampler: filesystem size.
pub const FILESYSTEM_SIZE_BYTES: &str = "filesystem_size_bytes";
/// Host sampler: filesystem space available to unprivileged users.
pub const FILESYSTEM_AVAIL_BYTES: &str = "filesystem_avail_bytes";
/// Host sampler: inode count.
pub const FILESYSTEM_FILES: &str = "filesystem_files";
/// Host sampler: free inodes.
pub const FILESYSTEM_FILES_FREE: &str = "filesystem_files_free";
/// Host sampler: bytes read from a block device.
pub const DISK_READ_BYTES_TOTAL: &str = "disk_read_bytes_total";
/// Host sampler: bytes written to a block device.
pub const DISK_WRITTEN_BYTES_TOTAL: &str = "disk_written_bytes_total";
/// Host sampler: time a block device was busy.
pub const DISK_IO_TIME_SECONDS_TOTAL: &str = "disk_io_time_seconds_total";
/// Agent self-telemetry: resident memory.
pub const AGENT_RESIDENT_MEMORY_BYTES: &str = "agent_resident_memory_bytes";
/// Agent self-telemetry: CPU time used.
pub const AGENT_CPU_SECONDS_TOTAL: &str = "agent_cpu_seconds_total";
/// Agent self-telemetry: batches waiting in the spool.
pub const AGENT_SPOOL_PENDING_BATCHES: &str = "agent_spool_pending_batches";
/// Agent self-telemetry: spool size on disk.
pub const AGENT_SPOOL_BYTES: &str = "agent_spool_bytes";
/// Agent self-telemetry: batches dropped from the spool.
pub const AGENT_SPOOL_DROPPED_BATCHES_TOTAL: &str = "agent_spool_dropped_batches_total";
/// Agent self-telemetry: failed sampler runs.
pub const AGENT_SAMPLER_ERRORS_TOTAL: &str = "agent_sampler_errors_total";
/// Agent self-telemetry: points the collector rejected.
pub const AGENT_REJECTED_POINTS_TOTAL: &str = "agent_rejected_points_total";

/// Logs: lines read per log.
pub const LOG_LINES_TOTAL: &str = "log_lines_total";
/// Logs: error lines (or records) per log and severity.
pub const LOG_ERRORS_TOTAL: &str = "log_errors_total";
/// Logs: lines longer than the maximum, truncated.
pub const LOG_LONG_LINES_TOTAL: &str = "log_long_lines_total";
/// Logs: truncations (copytruncate, rewrite) detected.
pub const LOG_TRUNCATIONS_TOTAL: &str = "log_truncations_total";
/// Logs: files rotated away unread while the agent was stopped.
pub const LOG_ROTATED_AWAY_TOTAL: &str = "log_rotated_away_total";
/// Logs: error lines counted in a log's catch-all group because one read found too many groups.
pub const LOG_GROUPS_MERGED_TOTAL: &str = "log_groups_merged_total";
/// Logs: Bitrix exception log records by type.
pub const BITRIX_EXCEPTIONS_TOTAL: &str = "bitrix_exceptions_total";
/// MySQL: 1 when the server answered this run, 0 when it was down, refused the login or stalled.
pub const MYSQL_UP: &str = "mysql_up";
/// MySQL: time taken to connect and log in.
pub const MYSQL_CONNECT_SECONDS: &str = "mysql_connect_seconds";
/// MySQL: seconds since the server started.
pub const MYSQL_UPTIME_SECONDS: &str = "mysql_uptime_seconds";
/// MySQL: open connections.
pub const MYSQL_THREADS_CONNECTED: &str = "mysql_threads_connected";
/// MySQL: threads executing a statement.
pub const MYSQL_THREADS_RUNNING: &str = "mysql_threads_running";
/// MySQL: the max_connections setting.
pub const MYSQL_MAX_CONNECTIONS: &str = "mysql_max_connections";
/// MySQL: queries that took longer than long_query_time.
pub const MYSQL_SLOW_QUERIES_TOTAL: &str = "mysql_slow_queries_total";
/// MySQL: failed connection attempts.
pub const MYSQL_ABORTED_CONNECTS_TOTAL: &str = "mysql_aborted_connects_total";
/// MySQL: statements sent by clients (Questions).
pub const MYSQL_QUERIES_TOTAL: &str = "mysql_queries_total";
/// MySQL: share of InnoDB page reads served from the buffer pool since start.
pub const MYSQL_INNODB_BUFFER_POOL_HIT_RATIO: &str = "mysql_innodb_buffer_pool_hit_ratio";
/// MySQL: InnoDB deadlocks (MariaDB).
pub const MYSQL_DEADLOCKS_TOTAL: &str = "mysql_deadlocks_total";
/// MySQL replica: 1 when the IO thread runs.
pub const MYSQL_REPLICATION_IO_RUNNING: &str = "mysql_replication_io_running";
/// MySQL replica: 1 when the SQL thread runs.
pub const MYSQL_REPLICATION_SQL_RUNNING: &str = "mysql_replication_sql_running";
/// MySQL replica: seconds behind the source.
pub const MYSQL_REPLICATION_LAG_SECONDS: &str = "mysql_replication_lag_seconds";
/// MySQL: database clock minus this server's clock.
pub const MYSQL_CLOCK_SKEW_SECONDS: &str = "mysql_clock_skew_seconds";
/// MySQL: failed runs of the MySQL check, by reason (down, auth_failed, timeout, ...).
pub const MYSQL_CHECK_FAILURES_TOTAL: &str = "mysql_check_failures_total";
/// Bitrix: 1 when the site's database could be read this run.
pub const BITRIX_UP: &str = "bitrix_up";
/// Bitrix: newest agent execution (b_agent.LAST_EXEC), unix seconds.
pub const BITRIX_CRON_LAST_RUN_TIMESTAMP_SECONDS: &str = "bitrix_cron_last_run_timestamp_seconds";
/// Bitrix: active agents past NEXT_EXEC by more than the grace period.
pub const BITRIX_AGENTS_OVERDUE: &str = "bitrix_agents_overdue";
/// Bitrix: active agents marked running whose lease expired.
pub const BITRIX_AGENTS_STUCK: &str = "bitrix_agents_stuck";
/// Bitrix: agents switched off by Bitrix after 3 failed runs.
pub const BITRIX_AGENTS_DISABLED: &str = "bitrix_agents_disabled";
/// Bitrix: active agents retrying after a failure.
pub const BITRIX_AGENTS_FAILING: &str = "bitrix_agents_failing";
/// Bitrix: mail events not sent yet (b_event).
pub const BITRIX_MAIL_QUEUE_PENDING: &str = "bitrix_mail_queue_pending";
/// Bitrix: age of the oldest unsent mail event (0 when none).
pub const BITRIX_MAIL_QUEUE_OLDEST_AGE_SECONDS: &str = "bitrix_mail_queue_oldest_age_seconds";
/// Bitrix: mail events that failed to send in the last hour.
pub const BITRIX_MAIL_FAILED_LAST_HOUR: &str = "bitrix_mail_failed_last_hour";
/// Bitrix: failed mail events still in b_event (SUCCESS_EXEC F, E or 0), whatever their age.
pub const BITRIX_MAIL_FAILED: &str = "bitrix_mail_failed";
/// Bitrix: when the newest failed mail event was tried (DATE_EXEC), unix seconds.
pub const BITRIX_MAIL_FAILED_LAST_TIMESTAMP_SECONDS: &str = "bitrix_mail_failed_last_timestamp_seconds";
/// Bitrix: when the daily system check last wrote its result to b_event_log, unix seconds.
pub const BITRIX_SITE_CHECKER_LAST_RUN_TIMESTAMP_SECONDS: &str = "bitrix_site_checker_last_run_timestamp_seconds";
/// Bitrix: 1 when the last system check (site_checker) passed.
pub const BITRIX_SITE_CHECKER_OK: &str = "bitrix_site_checker_ok";
/// Portal probe: 1 when the request succeeded (status < 400, keyword found).
pub const PROBE_SUCCESS: &str = "probe_success";
/// Portal probe: time the request took.
pub const PROBE_DURATION_SECONDS: &str = "probe_duration_seconds";
/// Portal probe: HTTP status code of the answer.
pub const PROBE_HTTP_STATUS: &str = "probe_http_status";
/// Portal probe: notAfter of the server certificate, unix seconds.
pub const PROBE_TLS_EXPIRY_TIMESTAMP_SECONDS: &str = "probe_tls_expiry_timestamp_seconds";
/// Services: 1 when a process of the service runs.
pub const SERVICE_UP: &str = "service_up";
/// Portal probe: which known reason the latest request failed for (1), every other reason 0.
pub const PROBE_FAILURE_REASON: &str = "probe_failure_reason";
/// Build of the agent (version, commit); the collector adds its own line to the family.
pub const BUILD_INFO: &str = "build_info";
/// Database: data and index bytes of a site's database.
pub const DB_SIZE_BYTES: &str = "db_size_bytes";
/// Database: number of tables.
pub const DB_TABLES: &str = "db_tables";
/// Database: allocated but unused bytes in all tables.
pub const DB_RECLAIMABLE_BYTES: &str = "db_reclaimable_bytes";
/// Database: size of the largest tables.
pub const DB_TABLE_SIZE_BYTES: &str = "db_table_size_bytes";
/// Database: reclaimable bytes of the tables with the most.
pub const DB_TABLE_RECLAIMABLE_BYTES: &str = "db_table_reclaimable_bytes";
/// Database: size of Bitrix's log tables.
pub const DB_LOG_TABLE_SIZE_BYTES: &str = "db_log_table_size_bytes";
/// Database: tables not on InnoDB.
pub const DB_NON_INNODB_TABLES: &str = "db_non_innodb_tables";
/// Versions: the MySQL/MariaDB server version.
pub const MYSQL_VERSION_INFO: &str = "mysql_version_info";
/// Versions: the PHP version.
pub const PHP_VERSION_INFO: &str = "php_version_info";
/// Versions: the Bitrix core version of a site.
pub const BITRIX_CORE_INFO: &str = "bitrix_core_info";
/// Versions: release date of the installed core.
pub const BITRIX_CORE_RELEASE_TIMESTAMP_SECONDS: &str = "bitrix_core_release_timestamp_seconds";
/// Versions: when the installed core was written.
pub const BITRIX_CORE_INSTALLED_TIMESTAMP_SECONDS: &str = "bitrix_core_installed_timestamp_seconds";
/// Web workers: nginx connections by state.
pub const NGINX_CONNECTIONS: &str = "nginx_connections";
/// Web workers: nginx requests since start.
pub const NGINX_REQUESTS_TOTAL: &str = "nginx_requests_total";
/// Web workers: Apache workers by state.
pub const APACHE_WORKERS: &str = "apache_workers";
/// Web workers: Apache requests since start.
pub const APACHE_ACCESSES_TOTAL: &str = "apache_accesses_total";
/// Web workers: PHP-FPM processes by pool and state.
pub const PHPFPM_PROCESSES: &str = "phpfpm_processes";
/// Web workers: PHP-FPM requests waiting for a process.
pub const PHPFPM_LISTEN_QUEUE: &str = "phpfpm_listen_queue";
/// Web workers: times PHP-FPM hit pm.max_children.
pub const PHPFPM_MAX_CHILDREN_REACHED_TOTAL: &str = "phpfpm_max_children_reached_total";
/// Web workers: PHP-FPM slow requests.
pub const PHPFPM_SLOW_REQUESTS_TOTAL: &str = "phpfpm_slow_requests_total";
/// Web workers: busy share of the workers.
pub const WEB_WORKERS_SATURATION_RATIO: &str = "web_workers_saturation_ratio";
/// Push server: 1 when its status page answers.
pub const PUSH_SERVER_UP: &str = "push_server_up";
/// Push server: time its status page took.
pub const PUSH_SERVER_RESPONSE_SECONDS: &str = "push_server_response_seconds";
/// Push server: subscriber connections by transport.
pub const PUSH_SERVER_CLIENTS: &str = "push_server_clients";
/// Push server: channels listened on.
pub const PUSH_SERVER_CHANNELS: &str = "push_server_channels";
/// Push server: processes that reported.
pub const PUSH_SERVER_PROCESSES: &str = "push_server_processes";
/// Backups: modification time of the newest backup.
pub const BACKUP_LAST_TIMESTAMP_SECONDS: &str = "backup_last_timestamp_seconds";
/// Backups: size of the newest backup.
pub const BACKUP_LAST_SIZE_BYTES: &str = "backup_last_size_bytes";
/// Backups: size of the backup before the newest.
pub const BACKUP_PREVIOUS_SIZE_BYTES: &str = "backup_previous_size_bytes";
/// Backups: number of backups kept.
pub const BACKUP_ARCHIVES: &str = "backup_archives";
/// Backups: free space where the backups are written.
pub const BACKUP_FILESYSTEM_AVAIL_BYTES: &str = "backup_filesystem_avail_bytes";

/// All known series, in documentation order.
pub const SERIES: &[Descriptor] = &[
    gauge(
        CPU_USAGE_RATIO,
        &[],
        "Share of CPU time spent not idle (idle and iowait excluded) since the previous sample, 0..1.",
    ),
    gauge(
        CPU_MODE_RATIO,
        &["mode"],
        "Share of CPU time spent in each mode (user, nice, system, iowait, irq, softirq, steal, idle) since the previous sample.",
    ),
    gauge(CPU_CORES, &[], "Number of CPUs seen in /proc/stat."),
    gauge(LOAD1, &[], "Load average over 1 minute."),
    gauge(LOAD5, &[], "Load average over 5 minutes."),
    gauge(LOAD15, &[], "Load average over 15 minutes."),
    gauge(MEMORY_TOTAL_BYTES, &[], "Total usable memory (MemTotal)."),
    gauge(MEMORY_AVAILABLE_BYTES, &[], "Memory available for new work without swapping (MemAvailable)."),
    gauge(SWAP_TOTAL_BYTES, &[], "Total swap space."),
    gauge(SWAP_FREE_BYTES, &[], "Unused swap space."),
    gauge(FILESYSTEM_SIZE_BYTES, &["mountpoint", "fstype", "device"], "Filesystem size."),
    gauge(FILESYSTEM_AVAIL_BYTES, &["mountpoint", "fstype", "device"], "Filesystem space available to non-root users."),
    gauge(FILESYSTEM_FILES, &["mountpoint", "fstype", "device"], "Filesystem inode count."),
    gauge(FILESYSTEM_FILES_FREE, &["mountpoint", "fstype", "device"], "Filesystem free inodes."),
    counter(DISK_READ_BYTES_TOTAL, &["device"], "Bytes read from the block device."),
    counter(DISK_WRITTEN_BYTES_TOTAL, &["device"], "Bytes written to the block device."),
    counter(DISK_IO_TIME_SECONDS_TOTAL, &["device"], "Seconds the block device spent doing IO."),
    gauge(AGENT_RESIDENT_MEMORY_BYTES, &[], "Resident memory of the agent process."),
    counter(AGENT_CPU_SECONDS_TOTAL, &[], "CPU time (user and system) used by the agent process."),
    gauge(AGENT_SPOOL_PENDING_BATCHES, &[], "Batches in the agent's spool not yet acknowledged by the collector."),
    gauge(AGENT_SPOOL_BYTES, &[], "Size of the agent's spool payloads."),
    counter(AGENT_SPOOL_DROPPED_BATCHES_TOTAL, &["reason"], "Batches the agent dropped from its spool, by reason."),
    counter(
        AGENT_SAMPLER_ERRORS_TOTAL,
        &["sampler", "reason"],
        "Sampler runs that produced nothing usable, by sampler and reason.",
    ),
    counter(LOG_LINES_TOTAL, &["log"], "Lines read from the log."),
    counter(
        LOG_ERRORS_TOTAL,
        &["log", "severity"],
        "Error lines (multi-line records count once) matched by the log's rules, by severity.",
    ),
    counter(LOG_LONG_LINES_TOTAL, &["log"], "Lines longer than logs.max_line_bytes, delivered truncated."),
    counter(LOG_TRUNCATIONS_TOTAL, &["log"], "Truncations of the log detected (copytruncate, rewrite in place)."),
    counter(
        LOG_ROTATED_AWAY_TOTAL,
        &["log"],
        "Files rotated away while the agent was stopped and not found again; their unread rest is lost.",
    ),
    counter(
        LOG_GROUPS_MERGED_TOTAL,
        &["log"],
        "Error lines counted in the log's catch-all groups (fingerprint other-<severity>) because one read found more distinct groups than a batch carries.",
    ),
    counter(
        BITRIX_EXCEPTIONS_TOTAL,
        &["log", "type"],
        "Bitrix exception log records by type (FATAL, UNCAUGHT_EXCEPTION, ...).",
    ),
    counter(AGENT_REJECTED_POINTS_TOTAL, &["reason"], "Points the collector rejected, by reason."),
    gauge(
        MYSQL_UP,
        &[],
        "MySQL: 1 when the server answered this run, 0 when it was down, refused the login or stalled.",
    ),
    gauge(MYSQL_CONNECT_SECONDS, &[], "MySQL: time taken to connect and log in."),
    gauge(MYSQL_UPTIME_SECONDS, &[], "MySQL: seconds since the server started."),
    gauge(MYSQL_THREADS_CONNECTED, &[], "MySQL: open connections."),
    gauge(MYSQL_THREADS_RUNNING, &[], "MySQL: threads executing a statement."),
    gauge(MYSQL_MAX_CONNECTIONS, &[], "MySQL: the max_connections setting."),
    counter(MYSQL_SLOW_QUERIES_TOTAL, &[], "MySQL: queries that took longer than long_query_time."),
    counter(MYSQL_ABORTED_CONNECTS_TOTAL, &[], "MySQL: failed connection attempts."),
    counter(MYSQL_QUERIES_TOTAL, &[], "MySQL: statements sent by clients (Questions)."),
    gauge(
        MYSQL_INNODB_BUFFER_POOL_HIT_RATIO,
        &[],
        "MySQL: share of InnoDB page reads served from the buffer pool since start.",
    ),
    counter(MYSQL_DEADLOCKS_TOTAL, &[], "MySQL: InnoDB deadlocks (MariaDB)."),
    gauge(MYSQL_REPLICATION_IO_RUNNING, &[], "MySQL replica: 1 when the IO thread runs."),
    gauge(MYSQL_REPLICATION_SQL_RUNNING, &[], "MySQL replica: 1 when the SQL thread runs."),
    gauge(MYSQL_REPLICATION_LAG_SECONDS, &[], "MySQL replica: seconds behind the source."),
    gauge(MYSQL_CLOCK_SKEW_SECONDS, &[], "MySQL: database clock minus this server's clock."),
    counter(
        MYSQL_CHECK_FAILURES_TOTAL,
        &["reason"],
        "MySQL: failed runs of the MySQL check, by reason (down, auth_failed, timeout, ...).",
    ),
    gauge(BITRIX_UP, &["site"], "Bitrix: 1 when the site's database could be read this run."),
    gauge(
        BITRIX_CRON_LAST_RUN_TIMESTAMP_SECONDS,
        &["site"],
        "Bitrix: newest agent execution (b_agent.LAST_EXEC), unix seconds.",
    ),
    gauge(BITRIX_AGENTS_OVERDUE, &["site"], "Bitrix: active agents past NEXT_EXEC by more than the grace period."),
    gauge(BITRIX_AGENTS_STUCK, &["site"], "Bitrix: active agents marked running whose lease expired."),
    gauge(BITRIX_AGENTS_DISABLED, &["site"], "Bitrix: agents switched off by Bitrix after 3 failed runs."),
    gauge(BITRIX_AGENTS_FAILING, &["site"], "Bitrix: active agents retrying after a failure."),
    gauge(BITRIX_MAIL_QUEUE_PENDING, &["site"], "Bitrix: mail events not sent yet (b_event)."),
    gauge(
        BITRIX_MAIL_QUEUE_OLDEST_AGE_SECONDS,
        &["site"],
        "Bitrix: age of the oldest unsent mail event (0 when none).",
    ),
    gauge(BITRIX_MAIL_FAILED_LAST_HOUR, &["site"], "Bitrix: mail events that failed to send in the last hour."),
    gauge(
        BITRIX_MAIL_FAILED,
        &["site"],
        "Bitrix: failed mail events still in b_event (SUCCESS_EXEC F, E or 0), whatever their age; never retried.",
    ),
    gauge(
        BITRIX_MAIL_FAILED_LAST_TIMESTAMP_SECONDS,
        &["site"],
        "Bitrix: when the newest failed mail event was tried (DATE_EXEC), unix seconds.",
    ),
    gauge(
        BITRIX_SITE_CHECKER_LAST_RUN_TIMESTAMP_SECONDS,
        &["site"],
        "Bitrix: when the daily system check last wrote its result to b_event_log, unix seconds.",
    ),
    gauge(BITRIX_SITE_CHECKER_OK, &["site"], "Bitrix: 1 when the last system check (site_checker) passed."),
    gauge(PROBE_SUCCESS, &["target"], "Portal probe: 1 when the request succeeded (status < 400, keyword found)."),
    gauge(PROBE_DURATION_SECONDS, &["target"], "Portal probe: time the request took."),
    gauge(PROBE_HTTP_STATUS, &["target"], "Portal probe: HTTP status code of the answer."),
    gauge(
        PROBE_TLS_EXPIRY_TIMESTAMP_SECONDS,
        &["target"],
        "Portal probe: notAfter of the server certificate, unix seconds.",
    ),
    gauge(SERVICE_UP, &["service"], "Services: 1 when a process of the service runs."),
    gauge(
        PROBE_FAILURE_REASON,
        &["target", "reason"],
        "Portal probe: 1 for the reason the latest request failed (dns, down, timeout, tls_invalid, http_status, keyword_missing, error), 0 for the others.",
    ),
    gauge(
        BUILD_INFO,
        &["component", "version", "commit"],
        "Constant 1 labelled with the version and git commit of the collector and of each agent.",
    ),
    gauge(DB_SIZE_BYTES, &["site"], "Database: data and index bytes of the site's database."),
    gauge(DB_TABLES, &["site"], "Database: number of tables in the site's database."),
    gauge(
        DB_RECLAIMABLE_BYTES,
        &["site"],
        "Database: bytes allocated to tables but unused (DATA_FREE), which OPTIMIZE TABLE gives back.",
    ),
    gauge(DB_TABLE_SIZE_BYTES, &["site", "table"], "Database: data and index bytes of the largest tables (top N)."),
    gauge(
        DB_TABLE_RECLAIMABLE_BYTES,
        &["site", "table"],
        "Database: reclaimable bytes of the tables with the most (top N).",
    ),
    gauge(
        DB_LOG_TABLE_SIZE_BYTES,
        &["site", "table"],
        "Database: size of Bitrix's fast-growing log tables (b_event_log, b_stat*, b_perf_*; top N).",
    ),
    gauge(DB_NON_INNODB_TABLES, &["site"], "Database: tables not using InnoDB (MyISAM and others)."),
    gauge(
        MYSQL_VERSION_INFO,
        &["version", "supported"],
        "Versions: always 1; the MySQL/MariaDB server version, and whether Bitrix supports it (yes, no, unknown).",
    ),
    gauge(
        PHP_VERSION_INFO,
        &["version", "supported"],
        "Versions: always 1; the PHP CLI version, and whether Bitrix supports it (yes, no, unknown).",
    ),
    gauge(BITRIX_CORE_INFO, &["site", "version"], "Versions: always 1; the site's Bitrix core (main module) version."),
    gauge(
        BITRIX_CORE_RELEASE_TIMESTAMP_SECONDS,
        &["site"],
        "Versions: release date of the installed core (SM_VERSION_DATE), unix seconds.",
    ),
    gauge(
        BITRIX_CORE_INSTALLED_TIMESTAMP_SECONDS,
        &["site"],
        "Versions: when the installed core's version file was written (its mtime), unix seconds.",
    ),
    gauge(
        NGINX_CONNECTIONS,
        &["state"],
        "Web workers: nginx client connections by state (active, reading, writing, waiting).",
    ),
    counter(NGINX_REQUESTS_TOTAL, &[], "Web workers: requests nginx has served since it started."),
    gauge(APACHE_WORKERS, &["state"], "Web workers: Apache workers busy or idle (server-status)."),
    counter(APACHE_ACCESSES_TOTAL, &[], "Web workers: requests Apache has served since it started."),
    gauge(PHPFPM_PROCESSES, &["pool", "state"], "Web workers: PHP-FPM processes of a pool, active or idle."),
    gauge(PHPFPM_LISTEN_QUEUE, &["pool"], "Web workers: requests waiting for a free PHP-FPM process."),
    counter(
        PHPFPM_MAX_CHILDREN_REACHED_TOTAL,
        &["pool"],
        "Web workers: times the pool hit pm.max_children since PHP-FPM started.",
    ),
    counter(PHPFPM_SLOW_REQUESTS_TOTAL, &["pool"], "Web workers: requests slower than request_slowlog_timeout."),
    gauge(WEB_WORKERS_SATURATION_RATIO, &["server"], "Web workers: share of workers busy (apache, php-fpm/<pool>)."),
    gauge(PUSH_SERVER_UP, &[], "Push server: 1 when /server-stat/ behind BitrixVM's nginx front (8895) answers 200."),
    gauge(PUSH_SERVER_RESPONSE_SECONDS, &[], "Push server: time /server-stat/ took to answer."),
    gauge(
        PUSH_SERVER_CLIENTS,
        &["transport"],
        "Push server: subscriber connections by transport (websocket, polling), all processes (/server-stat/).",
    ),
    gauge(PUSH_SERVER_CHANNELS, &[], "Push server: channels subscribers listen on, all processes (/server-stat/)."),
    gauge(
        PUSH_SERVER_PROCESSES,
        &[],
        "Push server: processes that reported their figures within 40 s (/server-stat/); 0 means Redis is unreachable.",
    ),
    gauge(
        BACKUP_LAST_TIMESTAMP_SECONDS,
        &["site", "kind"],
        "Backups: modification time of the newest backup of the site (kind bitrix or bitrixvm), unix seconds.",
    ),
    gauge(
        BACKUP_LAST_SIZE_BYTES,
        &["site", "kind"],
        "Backups: size of the newest backup of the site, all parts of a multi-part archive together.",
    ),
    gauge(
        BACKUP_PREVIOUS_SIZE_BYTES,
        &["site", "kind"],
        "Backups: size of the backup before the newest (absent while only one is kept).",
    ),
    gauge(BACKUP_ARCHIVES, &["site", "kind"], "Backups: number of backups of the site kept on disk."),
    gauge(
        BACKUP_FILESYSTEM_AVAIL_BYTES,
        &["site", "kind"],
        "Backups: bytes available on the filesystem the site's backups are written to.",
    ),
];

/// Looks up a series descriptor by name (without prefix).
pub fn lookup(name: &str) -> Option<&'static Descriptor> {
    SERIES.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for d in SERIES {
            assert!(seen.insert(d.name), "duplicate series {}", d.name);
            assert!(
                d.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "bad name {}",
                d.name
            );
            match d.kind {
                MetricKind::Counter => assert!(d.name.ends_with("_total"), "counter {} lacks _total", d.name),
                _ => assert!(!d.name.ends_with("_total"), "gauge {} ends in _total", d.name),
            }
            assert!(!d.labels.contains(&"host"), "{} declares host, which the collector adds", d.name);
        }
    }
}
