//! `b24watch-collector`: command line, logging, config loading, agent administration and exit
//! codes. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use b24watch_collector::config::{self, Config, RawConfig};
use b24watch_collector::{i18n, store};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Exit code for an invalid configuration (sysexits EX_CONFIG); units don't restart on it.
const EX_CONFIG: u8 = 78;

/// b24watch collector: receives b24watch agents' streams over gRPC, stores history in SQLite,
/// serves Prometheus metrics (/metrics) and a JSON API over HTTP.
///
/// Configuration comes from a TOML file (all keys optional; see --print-default-config), then
/// B24WATCH_* environment variables, then flags. Agents need a token: `enroll <id>` prints one.
#[derive(Debug, Parser)]
#[command(name = "b24watch-collector", version, max_term_width = 100)]
struct Cli {
    /// Config file. A missing file means all defaults.
    #[arg(long, short = 'c', env = "B24WATCH_COLLECTOR_CONFIG", default_value = config::DEFAULT_PATH, global = true)]
    config: PathBuf,
    /// Directory of the SQLite database [collector.data_dir].
    #[arg(long, env = "B24WATCH_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// gRPC address for agents, e.g. 0.0.0.0:10062 [collector.grpc_listen].
    #[arg(long, env = "B24WATCH_GRPC_LISTEN", global = true)]
    grpc_listen: Option<String>,
    /// HTTP address for /metrics and the API [collector.http_listen].
    #[arg(long, env = "B24WATCH_HTTP_LISTEN", global = true)]
    http_listen: Option<String>,
    /// Seconds of silence before an agent is reported down [collector.agent_timeout_secs].
    #[arg(long, env = "B24WATCH_AGENT_TIMEOUT_SECS", global = true)]
    agent_timeout_secs: Option<u64>,
    /// Print a complete, commented default config file and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Validate the configuration, print every problem, exit 0 or 78.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Same as --check-config.
    CheckConfig,
    /// Enrol an agent and print its token once (only a hash is stored). Put the token in the
    /// agent's token file (default /etc/b24watch/agent.token, mode 0600).
    Enroll {
        /// Agent id: becomes the `host` label. 1..=128 characters of [A-Za-z0-9._-]; the
        /// server's hostname is a good choice.
        agent_id: String,
        /// Issue a new token for an already enrolled agent; the old token stops working.
        #[arg(long)]
        rotate: bool,
        /// Record the client this host belongs to (a [[client]] name in the config). A host
        /// listed in a client's `hosts` in the config belongs to that client whatever is
        /// recorded here.
        #[arg(long)]
        client: Option<String>,
    },
    /// Revoke an agent's token; its open stream is closed within 10 seconds.
    Revoke {
        /// Agent id.
        agent_id: String,
    },
    /// List enrolled agents.
    Agents,
    /// Manage HTTP users: credentials for the status page, reports, the API and /metrics.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Print the audit log of HTTP writes and user changes, newest first.
    Audit {
        /// Rows at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Write the monthly SLA report (availability vs target, downtime, unknown time, incidents by
    /// severity with durations and reaction times, critical log errors, latest checks) from the
    /// database. Works while the collector runs.
    Report {
        /// Month as YYYY-MM, in [sla] timezone. Default: the current month so far.
        #[arg(long)]
        month: Option<String>,
        /// html, csv or json.
        #[arg(long, default_value = "html")]
        format: String,
        /// One host only (default: every host).
        #[arg(long, conflicts_with_all = ["client", "fleet"])]
        host: Option<String>,
        /// The report of one client ([[client]] name) against its contract: its hosts,
        /// availability vs the contract's target, incidents by priority with reaction and
        /// resolution times in support hours vs targets, breaches, maintenance windows. The month
        /// is in the contract's time zone.
        #[arg(long, conflicts_with = "fleet")]
        client: Option<String>,
        /// The fleet summary: one row per client with availability, breaches and open incidents.
        #[arg(long)]
        fleet: bool,
        /// Language of the HTML report: en or ru. Default: [sla] language.
        #[arg(long)]
        lang: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Manage client links: read-only, revocable, unguessable links that show one client its own
    /// status page, monthly reports (HTML, CSV, JSON) and read API without a login, and only
    /// its own hosts.
    ClientLink {
        #[command(subcommand)]
        action: ClientLinkCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClientLinkCommand {
    /// Create a link for a client and print its URL once (only a hash of its secret is
    /// stored). The URL starts with [collector] external_url: set it to the address the client
    /// reaches. Works at once in the running collector; audited.
    Create {
        /// The client: a [[client]] name in the config.
        client: String,
        /// What the link is for (who got it), shown by `client-link list`; at most 256 bytes.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List links: id, client, creation and revocation times (unix ms), note. Secrets are not
    /// stored, so URLs cannot be shown again.
    List,
    /// Revoke a link by its id, or every link of a client by the client's name. The running
    /// collector refuses it from the next request on; audited.
    Revoke {
        /// A link id (from `client-link list`) or a client name.
        link: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and print its token once (only a salted hash is stored). Send it as
    /// `Authorization: Bearer <token>`, or as HTTP Basic with the user name and the token as
    /// password. Takes effect in the running collector within 10 seconds.
    Add {
        /// User name: 1..=128 characters of [A-Za-z0-9._-].
        name: String,
        /// viewer (pages, reports, read API, /metrics), operator (also maintenance windows and
        /// incident acknowledgements) or admin (also the audit log).
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Issue a new secret (and set the role) for an existing user; the old one stops working.
        #[arg(long)]
        rotate: bool,
    },
    /// List users and their roles.
    List,
    /// Remove a user; its credential stops working within 10 seconds.
    Remove {
        /// User name.
        name: String,
    },
}

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    b24watch_common::logging::init();
    let cfg = match load(&cli) {
        Ok(cfg) => cfg,
        Err(err) => {
            eprintln!("b24watch-collector: invalid configuration:\n{err:#}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let result = match cli.command {
        _ if cli.check_config => {
            println!("configuration OK: {}", cli.config.display());
            Ok(())
        }
        Some(Command::CheckConfig) => {
            println!("configuration OK: {}", cli.config.display());
            Ok(())
        }
        Some(Command::Enroll { ref agent_id, rotate, ref client }) => admin(&cfg).and_then(|admin| {
            if let Some(name) = client {
                enroll_client_check(&cfg, agent_id, name)?;
            }
            let token = admin.enroll(agent_id, rotate, b24watch_collector::now_ms())?;
            if client.is_some() {
                admin.set_client(agent_id, client.as_deref())?;
            }
            println!("{token}");
            Ok(())
        }),
        Some(Command::Revoke { ref agent_id }) => admin(&cfg).and_then(|admin| {
            admin.revoke(agent_id, b24watch_collector::now_ms())?;
            eprintln!("revoked agent {agent_id:?}");
            Ok(())
        }),
        Some(Command::User { ref action }) => user(&cfg, action),
        Some(Command::Audit { limit }) => user_db(&cfg, |conn, _| {
            println!(
                "{:<15} {:<20} {:<9} {:<22} {:<7} {:<30} {:>6} {:<8} DETAIL",
                "AT_MS", "USER", "ROLE", "PEER", "METHOD", "PATH", "STATUS", "OUTCOME"
            );
            for e in store::credential::audit_entries(conn, 0, limit)? {
                println!(
                    "{:<15} {:<20} {:<9} {:<22} {:<7} {:<30} {:>6} {:<8} {}",
                    e.at_ms,
                    e.user,
                    e.role,
                    e.peer,
                    e.method,
                    e.path,
                    e.status,
                    e.outcome,
                    e.detail.escape_debug()
                );
            }
            Ok(())
        }),
        Some(Command::Report { ref month, ref format, ref host, ref lang, ref output, ref client, fleet }) => {
            if client.is_some() || fleet {
                contract_report(&cfg, month.as_deref(), format, client.as_deref(), lang.as_deref(), output.as_deref())
            } else {
                report(&cfg, month.as_deref(), format, host.as_deref(), lang.as_deref(), output.as_deref())
            }
        }
        Some(Command::Agents) => reader(&cfg).and_then(|reader| {
            let agents = reader.agents()?;
            println!("{:<40} {:>15} {:>15} {:>8}", "AGENT", "ENROLLED_MS", "LAST_SEEN_MS", "REVOKED");
            for agent in agents {
                let seen = agent.last_seen_ms.map_or_else(|| "-".to_owned(), |s| s.to_string());
                let revoked = if agent.revoked_ms.is_some() { "yes" } else { "no" };
                println!("{:<40} {:>15} {seen:>15} {revoked:>8}", agent.id, agent.created_ms);
            }
            Ok(())
        }),
        Some(Command::ClientLink { ref action }) => client_link(&cfg, action),
        Some(Command::Run) | None => serve(cfg),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("b24watch-collector: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the file (missing means defaults), applies env and flag overrides, validates.
fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut raw: RawConfig = b24watch_common::config::load_toml(&cli.config)?;
    if let Some(dir) = &cli.data_dir {
        raw.collector.data_dir.clone_from(dir);
    }
    if let Some(addr) = &cli.grpc_listen {
        raw.collector.grpc_listen.clone_from(addr);
    }
    if let Some(addr) = &cli.http_listen {
        raw.collector.http_listen.clone_from(addr);
    }
    if let Some(secs) = cli.agent_timeout_secs {
        raw.collector.agent_timeout_secs = secs;
    }
    Ok(Config::from_raw(raw, &cli.config)?)
}

/// Refuses `enroll --client` for a client the config does not define, and for a host the
/// config already gives to another client (the config would win).
fn enroll_client_check(cfg: &Config, agent_id: &str, client: &str) -> anyhow::Result<()> {
    let contracts = &cfg.sla.contracts;
    if contracts.client(client).is_none() {
        let known: Vec<&str> = contracts.clients.keys().map(String::as_str).collect();
        anyhow::bail!("--client {client:?}: no such [[client]] in the config; defined: {known:?}");
    }
    if let Some(other) = contracts.client_of(agent_id).filter(|c| c.name != client) {
        anyhow::bail!(
            "--client {client:?}: the config lists {agent_id:?} as a host of client {:?}, which takes precedence",
            other.name
        );
    }
    Ok(())
}

/// The store's administration side, for the commands that change agents.
fn admin(cfg: &Config) -> anyhow::Result<store::admin::Admin> {
    store::admin::Admin::open(&cfg.data_dir).with_context(|| format!("opening the store in {}", cfg.data_dir.display()))
}

/// Runs `action` on a connection of its own for the HTTP user and audit commands
/// (`store::credential`), with the current time.
fn user_db(
    cfg: &Config,
    action: impl FnOnce(&rusqlite::Connection, i64) -> Result<(), store::Error>,
) -> anyhow::Result<()> {
    let conn = store::open_connection(&cfg.data_dir)
        .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?;
    action(&conn, b24watch_collector::now_ms())?;
    Ok(())
}

/// The store's read side, for the commands that only read.
fn reader(cfg: &Config) -> anyhow::Result<store::query::Reader> {
    store::query::Reader::open(&cfg.data_dir)
        .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let grpc = tokio::net::TcpListener::bind(cfg.grpc_listen)
            .await
            .with_context(|| format!("binding the gRPC address {} (collector.grpc_listen)", cfg.grpc_listen))?;
        let http = tokio::net::TcpListener::bind(cfg.http_listen)
            .await
            .with_context(|| format!("binding the HTTP address {} (collector.http_listen)", cfg.http_listen))?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        b24watch_common::signal::on_shutdown(move || stop.cancel()).context("installing SIGTERM/SIGINT handlers")?;
        b24watch_collector::run(cfg, grpc, http, shutdown).await
    })
}

/// `user add|list|remove`.
fn user(cfg: &Config, action: &UserCommand) -> anyhow::Result<()> {
    use b24watch_collector::auth::Role;
    match action {
        UserCommand::Add { name, role, rotate } => {
            let Some(role) = Role::parse(role) else {
                anyhow::bail!("--role {role:?}: expected viewer, operator or admin");
            };
            user_db(cfg, |conn, now| {
                let token = store::credential::add_user(conn, name, role, *rotate, now)?;
                println!("{token}");
                eprintln!(
                    "user {name:?} ({}) {}; the token above is shown once. Send it as `Authorization: Bearer <token>` \
                     or as HTTP Basic with user {name:?} and the token as password. The running collector \
                     picks it up within 10 s",
                    role.as_str(),
                    if *rotate { "has a new secret" } else { "created" }
                );
                Ok(())
            })
        }
        UserCommand::List => user_db(cfg, |conn, _| {
            println!("{:<40} {:<9} {:>15} {:>15}", "USER", "ROLE", "CREATED_MS", "ROTATED_MS");
            for u in store::credential::list_users(conn)? {
                let rotated = u.rotated_ms.map_or_else(|| "-".to_owned(), |r| r.to_string());
                println!("{:<40} {:<9} {:>15} {rotated:>15}", u.name, u.role, u.created_ms);
            }
            Ok(())
        }),
        UserCommand::Remove { name } => user_db(cfg, |conn, now| {
            store::credential::remove_user(conn, name, now)?;
            eprintln!("removed user {name:?}; the running collector refuses its credential within 10 s");
            Ok(())
        }),
    }
}

/// Checks `--format` and resolves `--lang` (the configured language without it).
fn report_lang(cfg: &Config, format: &str, lang: Option<&str>) -> anyhow::Result<i18n::Lang> {
    if !matches!(format, "html" | "csv" | "json") {
        anyhow::bail!("--format {format:?}: expected html, csv or json");
    }
    match lang {
        Some(code) => i18n::Lang::parse(code).map_err(|err| anyhow::anyhow!("--lang {err}")),
        None => Ok(cfg.sla.language),
    }
}

/// `report`: builds the SLA report from the database and writes it.
fn report(
    cfg: &Config,
    month: Option<&str>,
    format: &str,
    host: Option<&str>,
    lang: Option<&str>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use b24watch_collector::{report, uptime};
    let lang = report_lang(cfg, format, lang)?;
    let reader = std::sync::Arc::new(reader(cfg)?);
    let now = b24watch_collector::now_ms();
    let service = uptime::Uptime::new(cfg.sla.clone(), reader);
    let month = month.map_or_else(
        || {
            jiff::Timestamp::from_millisecond(now)
                .map_or_else(|_| String::new(), |t| t.to_zoned(cfg.sla.timezone.clone()).strftime("%Y-%m").to_string())
        },
        str::to_owned,
    );
    let built = report::build(&service, &month, host, now).map_err(anyhow::Error::msg)?;
    let text = match format {
        "json" => serde_json::to_string_pretty(&built)? + "\n",
        "csv" => report::csv(&built),
        _ => report::html(&built, lang),
    };
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// `client-link create|list|revoke`.
fn client_link(cfg: &Config, action: &ClientLinkCommand) -> anyhow::Result<()> {
    use store::client_link;
    match action {
        ClientLinkCommand::Create { client, note } => {
            if cfg.sla.contracts.client(client).is_none() {
                let known: Vec<&str> = cfg.sla.contracts.clients.keys().map(String::as_str).collect();
                anyhow::bail!(
                    "no client {client:?} in the config: add a [[client]] with name = {client:?} first (configured: {})",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                );
            }
            let base = config::external_url(cfg.external_url.as_deref(), cfg.http_listen, cfg.http.tls.is_some());
            user_db(cfg, |conn, now| {
                let (id, token) = client_link::create(conn, client, note, now)?;
                println!("{base}/c/{token}/");
                eprintln!(
                    "link {id} for client {client:?} created; the URL above is shown once. It opens the client's status \
                     page, reports and read API without a login; revoke it with `b24watch-collector client-link revoke {id}`"
                );
                if cfg.external_url.is_none() {
                    eprintln!(
                        "note: [collector] external_url is not set, so the URL starts with the listen address; replace \
                         {base} with the address the client reaches, or set external_url"
                    );
                }
                Ok(())
            })
        }
        ClientLinkCommand::List => user_db(cfg, |conn, _| {
            println!("{:>6} {:<24} {:>15} {:>15} NOTE", "ID", "CLIENT", "CREATED_MS", "REVOKED_MS");
            for link in client_link::list(conn)? {
                let revoked = link.revoked_ms.map_or_else(|| "-".to_owned(), |r| r.to_string());
                println!(
                    "{:>6} {:<24} {:>15} {revoked:>15} {}",
                    link.id,
                    link.client,
                    link.created_ms,
                    link.note.escape_debug()
                );
            }
            Ok(())
        }),
        ClientLinkCommand::Revoke { link } => user_db(cfg, |conn, now| {
            let ids = client_link::revoke(conn, link, now)?;
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            eprintln!("revoked client link {}; the running collector refuses it from the next request", ids.join(", "));
            Ok(())
        }),
    }
}

/// `report --client NAME` and `report --fleet`.
fn contract_report(
    cfg: &Config,
    month: Option<&str>,
    format: &str,
    client: Option<&str>,
    lang: Option<&str>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use b24watch_collector::{client_report, uptime};
    let lang = report_lang(cfg, format, lang)?;
    let tz = client
        .and_then(|c| cfg.sla.contracts.client(c))
        .map_or_else(|| cfg.sla.timezone.clone(), |c| c.contract.timezone.clone());
    let now = b24watch_collector::now_ms();
    let month = month.map_or_else(
        || {
            jiff::Timestamp::from_millisecond(now)
                .map_or_else(|_| String::new(), |t| t.to_zoned(tz.clone()).strftime("%Y-%m").to_string())
        },
        str::to_owned,
    );
    let service = uptime::Uptime::new(cfg.sla.clone(), std::sync::Arc::new(reader(cfg)?));
    let text = match client {
        Some(name) => {
            let built = client_report::build(&service, name, &month, now).map_err(anyhow::Error::msg)?;
            match format {
                "json" => serde_json::to_string_pretty(&built)? + "\n",
                "csv" => client_report::csv(&built),
                _ => client_report::html(&built, lang),
            }
        }
        None => {
            let built = client_report::fleet(&service, &month, now).map_err(anyhow::Error::msg)?;
            match format {
                "json" => serde_json::to_string_pretty(&built)? + "\n",
                "csv" => client_report::fleet_csv(&built),
                _ => client_report::fleet_html(&built, lang, tz),
            }
        }
    };
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// glibc's allocator settings, made before any thread starts.
///
/// glibc serves a request above `M_MMAP_THRESHOLD` (128 KiB at first) with its own mapping, and
/// raises the threshold to the size of each such mapping freed (up to 32 MiB): after the first
/// large buffers are freed (group commits, `/metrics` renders, decoded batches), later ones come
/// from the arenas, whose freed memory stays resident. Fixing both thresholds at 128 KiB keeps
/// large buffers in mappings returned on free and trims an arena's top beyond 128 KiB.
/// `make bench-ingest`, same VM, `BATCHES=120 NO_VM=1 NO_PACED=1`: peak RSS 270 -> 231 MiB
/// (53 MiB with the 1,000 agents connected, 70 before), 1.05 M samples/s against 1.00. Capping
/// the arenas as well (`MALLOC_ARENA_MAX=2`, tried through `GLIBC_TUNABLES`) saved 1 MiB more and
/// cost a third of the ingest rate (issue #15).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod allocator {
    use std::ffi::c_int;

    /// From glibc's `malloc.h`.
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    /// Both thresholds, bytes.
    const THRESHOLD_BYTES: c_int = 128 * 1024;

    unsafe extern "C" {
        /// glibc: sets an allocator parameter; returns 1 on success, 0 on error.
        safe fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    /// Fixes the mmap and trim thresholds (a failure leaves glibc's defaults: nothing to report).
    pub(super) fn tune() {
        mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES);
        mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES);
    }
}

/// Other C libraries keep their own allocator settings.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    pub(super) fn tune() {}
}
