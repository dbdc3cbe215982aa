//! `b24watch-agent`: command line, logging, config loading and exit codes. Nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use b24watch_agent::config::{self, Config, RawConfig, TokenSource};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Exit code for an invalid configuration (sysexits EX_CONFIG); units don't restart on it.
const EX_CONFIG: u8 = 78;

/// b24watch agent: samples this Bitrix24 server (CPU, memory, disks, load) and streams the
/// results to a b24watch collector, spooling to disk while the collector is unreachable.
///
/// Configuration comes from a TOML file (all keys optional; see --print-default-config), then
/// B24WATCH_* environment variables, then flags. The agent opens no port.
#[derive(Debug, Parser)]
#[command(name = "b24watch-agent", version, max_term_width = 100)]
struct Cli {
    /// Config file. A missing file means all defaults.
    #[arg(long, short = 'c', env = "B24WATCH_AGENT_CONFIG", default_value = config::DEFAULT_PATH, global = true)]
    config: PathBuf,
    /// Collector gRPC endpoint, e.g. http://collector.example:10062 [agent.collector_url].
    #[arg(long, env = "B24WATCH_COLLECTOR_URL", global = true)]
    collector_url: Option<String>,
    /// File whose first line is the agent token [agent.token_file].
    #[arg(long, env = "B24WATCH_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The agent token itself [agent.token]. Prefer --token-file: arguments are visible in `ps`.
    #[arg(long, env = "B24WATCH_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Agent id as enrolled on the collector [agent.id]; default: the id inside the token.
    #[arg(long, env = "B24WATCH_AGENT_ID", global = true)]
    id: Option<String>,
    /// Directory for the spool [agent.state_dir].
    #[arg(long, env = "B24WATCH_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Seconds between samples [agent.interval_secs].
    #[arg(long, env = "B24WATCH_INTERVAL_SECS", global = true)]
    interval_secs: Option<u64>,
    /// Print a complete, commented default config file and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Validate the configuration (and that the token is readable), print every problem, exit 0 or 78.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Same as --check-config.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", config::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    b24watch_common::logging::init();
    let (cfg, token) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("b24watch-agent: invalid configuration:\n{err:#}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if cli.check_config || matches!(cli.command, Some(Command::CheckConfig)) {
        println!("configuration OK: {}", cli.config.display());
        return ExitCode::SUCCESS;
    }
    match serve(cfg, token) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("b24watch-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the file (missing means defaults), applies env and flag overrides, validates, reads the token.
fn load(cli: &Cli) -> anyhow::Result<(Config, String)> {
    let mut raw: RawConfig = b24watch_common::config::load_toml(&cli.config)?;
    if let Some(url) = &cli.collector_url {
        raw.agent.collector_url.clone_from(url);
    }
    if let Some(path) = &cli.token_file {
        raw.agent.token_file.clone_from(path);
    }
    if let Some(token) = &cli.token {
        raw.agent.token.clone_from(token);
    }
    if let Some(id) = &cli.id {
        raw.agent.id.clone_from(id);
    }
    if let Some(dir) = &cli.state_dir {
        raw.agent.state_dir.clone_from(dir);
    }
    if let Some(secs) = cli.interval_secs {
        raw.agent.interval_secs = secs;
    }
    let cfg = Config::from_raw(raw, &cli.config)?;
    let token = match &cfg.token {
        TokenSource::Inline(token) => token.clone(),
        TokenSource::File(path) => read_token(path)?,
    };
    if cfg.id.is_none() && b24watch_agent::token_agent_id(&token).is_none() {
        anyhow::bail!(
            "the token has no agent id before its last '.': use the token printed by `b24watch-collector enroll`"
        );
    }
    Ok((cfg, token))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the agent token from {}: enroll this agent on the collector with \
             `b24watch-collector enroll <id>` and write the printed token to that file, or pass --token-file",
            path.display()
        )
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the token file {} is empty", path.display());
    Ok(token)
}

fn serve(cfg: Config, token: String) -> anyhow::Result<()> {
    // One thread is plenty for a few samplers and one stream, and keeps RSS small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        b24watch_common::signal::on_shutdown(move || stop.cancel()).context("installing SIGTERM/SIGINT handlers")?;
        b24watch_agent::run(cfg, token, shutdown).await
    })
}
