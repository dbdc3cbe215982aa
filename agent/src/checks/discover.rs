//! Finds Bitrix sites on this server and reads what the agent needs from their settings: database
//! connection and exception log path. Never executes PHP (see [`super::php`]).
//!
//! A site is a document root that has `bitrix/.settings.php` (current cores) or
//! `bitrix/php_interface/dbconn.php` (old cores; also consulted when `.settings.php` lacks a
//! connection). `.settings_extra.php` overrides `.settings.php`, as in Bitrix itself.

use std::fmt;
use std::path::{Path, PathBuf};

use super::php::{self, Value};

/// Where a site's database lives and how to log in. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DbCredentials {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// Database (schema) name.
    pub database: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for DbCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCredentials")
            .field("endpoint", &self.endpoint)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A database server address as Bitrix writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `localhost` without a socket path: the local server's default socket.
    LocalDefault,
    /// A unix socket path (`localhost:/var/lib/mysqld/mysqld.sock`).
    Socket(PathBuf),
    /// TCP host and port.
    Tcp(String, u16),
}

impl Endpoint {
    /// Parses Bitrix's `host` value: `localhost`, `p:localhost`, `host:port`, `localhost:/sock`.
    pub fn parse(host: &str) -> Endpoint {
        let host = host.trim().strip_prefix("p:").unwrap_or(host.trim());
        if let Some((name, rest)) = host.split_once(':') {
            if rest.starts_with('/') {
                return Endpoint::Socket(PathBuf::from(rest));
            }
            if let Ok(port) = rest.parse::<u16>() {
                return Endpoint::Tcp(name.to_owned(), port);
            }
        }
        if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
            Endpoint::LocalDefault
        } else {
            Endpoint::Tcp(host.to_owned(), 3306)
        }
    }
}

/// One Bitrix site found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Name used as the `site` label: the document root's directory name (`default` for the
    /// BitrixVM default site `/home/bitrix/www`).
    pub name: String,
    /// Document root.
    pub root: PathBuf,
    /// Database connection, if the settings hold a readable one.
    pub db: Option<DbCredentials>,
    /// Exception log file, if configured with a literal path (or the core default).
    pub exception_log: Option<PathBuf>,
    /// Problems met while reading this site's settings (no secrets in them).
    pub problems: Vec<String>,
}

/// One nginx `server` block: what it listens on, its names, its document root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vhost {
    /// `listen` directives as (address to connect to, port, ssl).
    pub listen: Vec<(String, u16, bool)>,
    /// `server_name` values in order (`_` and patterns included).
    pub names: Vec<String>,
    /// `root`, with `$variables` set in the block (`set $docroot "..."`, BitrixVM's style)
    /// substituted.
    pub root: Option<PathBuf>,
}

/// Largest vhost file read.
const MAX_VHOST_BYTES: u64 = 1 << 20;

/// The `server` blocks of the files in `dirs` (BitrixVM: `/etc/nginx/bx/site_enabled/*.conf`,
/// symlinks to `site_avaliable`). `include`d files are not followed; unreadable files are skipped.
pub fn nginx_vhosts(dirs: &[PathBuf]) -> Vec<Vhost> {
    let mut vhosts = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if !meta.is_file() || meta.len() > MAX_VHOST_BYTES {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                vhosts.extend(parse_nginx_servers(&text));
            }
        }
    }
    vhosts
}

/// nginx config text to tokens: words (quotes removed), `{`, `}`, `;`; comments dropped.
fn nginx_tokens(text: &str) -> Vec<String> {
    fn flush(word: &mut String, tokens: &mut Vec<String>) {
        if !word.is_empty() {
            tokens.push(std::mem::take(word));
        }
    }
    let mut tokens = Vec::new();
    let mut chars = text.chars();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut tokens);
                tokens.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

/// A `server` block being read: the vhost, its `set` variables, its raw `root`.
type OpenServer = (Vhost, Vec<(String, String)>, Option<String>);

/// The `server` blocks of one nginx config text.
pub fn parse_nginx_servers(text: &str) -> Vec<Vhost> {
    let mut out = Vec::new();
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<OpenServer> = None;
    let mut statement: Vec<String> = Vec::new();
    for token in nginx_tokens(text) {
        match token.as_str() {
            "{" => {
                let name = statement.first().cloned().unwrap_or_default();
                if name == "server" && current.is_none() {
                    current = Some((Vhost { listen: Vec::new(), names: Vec::new(), root: None }, Vec::new(), None));
                }
                blocks.push(name);
                statement.clear();
            }
            "}" => {
                if blocks.pop().as_deref() == Some("server")
                    && !blocks.iter().any(|b| b == "server")
                    && let Some((mut vhost, vars, root)) = current.take()
                {
                    vhost.root = root.map(|mut root| {
                        for (name, value) in &vars {
                            root = root.replace(&format!("${name}"), value);
                        }
                        PathBuf::from(root)
                    });
                    out.push(vhost);
                }
                statement.clear();
            }
            ";" => {
                // Directives of the server block itself, not of its locations.
                if let Some((vhost, vars, root)) = &mut current
                    && blocks.last().map(String::as_str) == Some("server")
                {
                    match statement.first().map(String::as_str) {
                        Some("listen") => vhost.listen.extend(parse_listen(&statement[1..])),
                        Some("server_name") => vhost.names.extend(statement[1..].iter().cloned()),
                        Some("root") if statement.len() > 1 => *root = Some(statement[1].clone()),
                        Some("set") if statement.len() > 2 => {
                            vars.push((statement[1].trim_start_matches('$').to_owned(), statement[2].clone()));
                        }
                        _ => {}
                    }
                }
                statement.clear();
            }
            _ => statement.push(token),
        }
    }
    out
}

/// `listen` arguments to (address to connect to, port, ssl); `None` for unix sockets.
fn parse_listen(args: &[String]) -> Option<(String, u16, bool)> {
    let first = args.first()?;
    if first.starts_with("unix:") {
        return None;
    }
    let ssl = args.iter().any(|a| a == "ssl");
    let (host, port) = if let Ok(port) = first.parse::<u16>() {
        (None, port)
    } else if let Some((host, port)) = first.rsplit_once(':') {
        (Some(host), port.parse().ok()?)
    } else {
        (Some(first.as_str()), if ssl { 443 } else { 80 })
    };
    // A wildcard address is reached on loopback.
    let host = match host {
        None | Some("*" | "0.0.0.0" | "[::]" | "localhost") => "127.0.0.1".to_owned(),
        Some(h) => h.to_owned(),
    };
    Some((host, port, ssl))
}

/// Finds sites under the given document-root patterns (`*` and `?` in the last component).
pub fn discover(roots: &[String]) -> Vec<Site> {
    let mut sites: Vec<Site> = Vec::new();
    for pattern in roots {
        for root in crate::logs::glob::expand_dirs(pattern) {
            if sites.iter().any(|s| s.root == root) {
                continue;
            }
            if let Some(site) = read_site(&root) {
                sites.push(site);
            }
        }
    }
    // Two roots with the same directory name (`/a/www`, `/b/www`) keep distinct labels.
    for idx in 1..sites.len() {
        if sites[..idx].iter().any(|s| s.name == sites[idx].name) {
            sites[idx].name = format!("{}-{idx}", sites[idx].name);
        }
    }
    sites
}

/// Reads one document root; `None` when it holds no Bitrix settings file.
pub fn read_site(root: &Path) -> Option<Site> {
    let settings = root.join("bitrix/.settings.php");
    let extra = root.join("bitrix/.settings_extra.php");
    let dbconn = root.join("bitrix/php_interface/dbconn.php");
    if !settings.is_file() && !dbconn.is_file() {
        return None;
    }
    let name = match root.file_name().and_then(|n| n.to_str()) {
        Some("www") | None => "default".to_owned(),
        Some(other) => other.to_owned(),
    };
    let mut site = Site { name, root: root.to_path_buf(), db: None, exception_log: None, problems: Vec::new() };
    let mut arrays = Vec::new();
    for path in [&settings, &extra] {
        if !path.is_file() {
            continue;
        }
        match read_limited(path).and_then(|src| php::parse_return_array(&src).map_err(|e| e.to_string())) {
            Ok(value) => arrays.push(value),
            Err(err) => site.problems.push(format!("{}: {err}", path.display())),
        }
    }
    // Later files (`.settings_extra.php`) win.
    for value in arrays.iter().rev() {
        if site.db.is_none()
            && let Some(conn) = value.path(&["connections", "value", "default"])
        {
            match connection_from_settings(conn) {
                Ok(db) => site.db = Some(db),
                Err(err) => site.problems.push(format!("{}: connections.default: {err}", settings.display())),
            }
        }
        if site.exception_log.is_none()
            && let Some(file) = value.path(&["exception_handling", "value", "log", "settings", "file"])
        {
            match file {
                Value::Str(path) if !path.is_empty() => site.exception_log = Some(resolve(root, path)),
                Value::Expr { line } => site.problems.push(format!(
                    "{}: exception_handling log file at line {line} is an expression, not a literal path: \
                     add the path to [[logs.file]] yourself",
                    settings.display()
                )),
                _ => {}
            }
        }
    }
    if site.db.is_none() && dbconn.is_file() {
        match read_limited(&dbconn).and_then(|src| php::parse_assignments(&src).map_err(|e| e.to_string())) {
            Ok(vars) => match connection_from_dbconn(&vars) {
                Ok(db) => site.db = Some(db),
                Err(err) => site.problems.push(format!("{}: {err}", dbconn.display())),
            },
            Err(err) => site.problems.push(format!("{}: {err}", dbconn.display())),
        }
    }
    if site.exception_log.is_none() && arrays.iter().any(|v| v.get("exception_handling").is_some()) {
        // The core's default when `log.settings.file` is not set.
        site.exception_log = Some(root.join("bitrix/modules/error.log"));
    }
    Some(site)
}

fn resolve(root: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') { PathBuf::from(path) } else { root.join(path) }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    file.take(php::MAX_FILE_BYTES as u64 + 1).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

fn field(conn: &Value, key: &str) -> Result<String, String> {
    match conn.get(key) {
        Some(Value::Expr { line }) => Err(format!("`{key}` at line {line} is an expression, not a literal")),
        Some(value) => value.as_string().ok_or_else(|| format!("`{key}` is not a string")),
        None => Err(format!("`{key}` is missing")),
    }
}

fn connection_from_settings(conn: &Value) -> Result<DbCredentials, String> {
    if let Ok(class) = field(conn, "className")
        && !class.to_ascii_lowercase().contains("mysql")
    {
        return Err(format!("connection class {class} is not MySQL"));
    }
    Ok(DbCredentials {
        endpoint: Endpoint::parse(&field(conn, "host")?),
        database: field(conn, "database")?,
        user: field(conn, "login")?,
        password: field(conn, "password")?,
    })
}

fn connection_from_dbconn(vars: &[(String, Value)]) -> Result<DbCredentials, String> {
    let get = |name: &str| -> Result<String, String> {
        match vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v) {
            Some(Value::Expr { line }) => Err(format!("${name} at line {line} is an expression, not a literal")),
            Some(value) => value.as_string().ok_or_else(|| format!("${name} is not a string")),
            None => Err(format!("${name} is missing")),
        }
    };
    Ok(DbCredentials {
        endpoint: Endpoint::parse(&get("DBHost")?),
        database: get("DBName")?,
        user: get("DBLogin")?,
        password: get("DBPassword")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrixvm_vhosts_give_their_listen_names_and_root() {
        let conf = "# Ansible managed\nserver {\n\tlisten 80;\n\tlisten 443 ssl http2; # tls\n\tserver_name portal.example.com www.portal.example.com;\n\t\
                    set $docroot \"/home/bitrix/ext_www/portal.example.com\";\n\troot \"$docroot\";\n\t\
                    location ~ \\.php$ { root /elsewhere; listen 9; }\n}\nserver { listen 127.0.0.1:8080 default_server; server_name _; root /home/bitrix/www; }\n";
        let vhosts = parse_nginx_servers(conf);
        assert_eq!(vhosts.len(), 2);
        assert_eq!(vhosts[0].listen, [("127.0.0.1".to_owned(), 80, false), ("127.0.0.1".to_owned(), 443, true)]);
        assert_eq!(vhosts[0].names, ["portal.example.com", "www.portal.example.com"]);
        assert_eq!(vhosts[0].root.as_deref(), Some(Path::new("/home/bitrix/ext_www/portal.example.com")));
        assert_eq!(vhosts[1].listen, [("127.0.0.1".to_owned(), 8080, false)]);
        assert_eq!(vhosts[1].root.as_deref(), Some(Path::new("/home/bitrix/www")));
    }

    #[test]
    fn endpoints_in_every_style_bitrix_writes() {
        assert_eq!(Endpoint::parse("localhost"), Endpoint::LocalDefault);
        assert_eq!(Endpoint::parse("p:localhost"), Endpoint::LocalDefault);
        assert_eq!(Endpoint::parse("127.0.0.1:3307"), Endpoint::Tcp("127.0.0.1".into(), 3307));
        assert_eq!(Endpoint::parse("db.internal"), Endpoint::Tcp("db.internal".into(), 3306));
        assert_eq!(
            Endpoint::parse("localhost:/var/lib/mysqld/mysqld.sock"),
            Endpoint::Socket("/var/lib/mysqld/mysqld.sock".into())
        );
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// A tree shaped like BitrixVM: the default site, extra sites in several connection styles, an
    /// old install with only dbconn.php, a hostile settings file and a directory that is no site.
    #[test]
    fn bitrixvm_shaped_tree_is_discovered_with_every_connection_style() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path();
        write(
            &home.join("www/bitrix/.settings.php"),
            "<?php\nreturn array (\n  'connections' => array (\n    'value' => array (\n      'default' => array (\n        \
             'className' => '\\\\Bitrix\\\\Main\\\\DB\\\\MysqliConnection',\n        'host' => 'localhost',\n        \
             'database' => 'sitemanager',\n        'login' => 'bitrix0',\n        'password' => 'Fz!{+[q\\'\"x',\n        \
             'options' => 2,\n      ),\n    ),\n    'readonly' => true,\n  ),\n  'exception_handling' => array (\n    \
             'value' => array ('debug' => false, 'handled_errors_types' => 4437, 'log' => array ('settings' => \
             array ('file' => '/var/log/php/exceptions.log', 'log_size' => 1000000))),\n    'readonly' => false,\n  ),\n);\n",
        );
        write(
            &home.join("ext_www/shop.example.com/bitrix/.settings.php"),
            "<?php return ['connections' => ['value' => ['default' => ['className' => '\\\\Bitrix\\\\Main\\\\DB\\\\MysqliConnection', \
             'host' => 'db.internal:3307', 'database' => 'shop', 'login' => 'shop', 'password' => \"pa\\$\\\"ss\"]]]];",
        );
        // `.settings_extra.php` overrides the connection; the log path is relative.
        write(
            &home.join("ext_www/crm.example.com/bitrix/.settings.php"),
            "<?php return ['connections' => ['value' => ['default' => ['host' => 'p:localhost', 'database' => 'old', \
             'login' => 'u', 'password' => 'p']]], 'exception_handling' => ['value' => ['log' => ['settings' => \
             ['file' => 'local/logs/exceptions.log']]]]];",
        );
        write(
            &home.join("ext_www/crm.example.com/bitrix/.settings_extra.php"),
            "<?php return ['connections' => ['value' => ['default' => ['host' => 'localhost:/var/lib/mysqld/mysqld.sock', \
             'database' => 'crm', 'login' => 'crm', 'password' => 'c']]]];",
        );
        write(
            &home.join("ext_www/old.example.com/bitrix/php_interface/dbconn.php"),
            "<?\n$DBType = \"mysql\";\n$DBHost = \"127.0.0.1\";\n$DBLogin = 'legacy';\n$DBPassword = 'l3gacy';\n$DBName = \"legacy\";\n",
        );
        write(
            &home.join("ext_www/broken.example.com/bitrix/.settings.php"),
            "<?php return array('connections' => array(",
        );
        write(
            &home.join("ext_www/env.example.com/bitrix/.settings.php"),
            "<?php return ['connections' => ['value' => ['default' => ['host' => 'localhost', 'database' => 'env', \
             'login' => 'env', 'password' => getenv('DB_PASSWORD')]]]];",
        );
        std::fs::create_dir_all(home.join("ext_www/static.example.com")).expect("mkdir");

        let roots = [format!("{}/www", home.display()), format!("{}/ext_www/*", home.display())];
        let sites = discover(&roots);
        let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "default",
                "broken.example.com",
                "crm.example.com",
                "env.example.com",
                "old.example.com",
                "shop.example.com"
            ]
        );
        let site = |name: &str| sites.iter().find(|s| s.name == name).expect("site");

        let default = site("default").db.clone().expect("default db");
        assert_eq!(default.endpoint, Endpoint::LocalDefault);
        assert_eq!((default.database.as_str(), default.user.as_str()), ("sitemanager", "bitrix0"));
        assert_eq!(default.password, "Fz!{+[q'\"x");
        assert_eq!(site("default").exception_log, Some(PathBuf::from("/var/log/php/exceptions.log")));

        let shop = site("shop.example.com").db.clone().expect("shop db");
        assert_eq!(shop.endpoint, Endpoint::Tcp("db.internal".into(), 3307));
        assert_eq!(shop.password, "pa$\"ss");

        let crm = site("crm.example.com");
        let crm_db = crm.db.clone().expect("crm db");
        assert_eq!(
            (crm_db.database.as_str(), crm_db.endpoint.clone()),
            ("crm", Endpoint::Socket("/var/lib/mysqld/mysqld.sock".into()))
        );
        assert_eq!(crm.exception_log, Some(home.join("ext_www/crm.example.com/local/logs/exceptions.log")));

        let old = site("old.example.com").db.clone().expect("dbconn.php db");
        assert_eq!(
            (old.endpoint.clone(), old.user.as_str(), old.password.as_str()),
            (Endpoint::Tcp("127.0.0.1".into(), 3306), "legacy", "l3gacy")
        );

        let broken = site("broken.example.com");
        assert!(broken.db.is_none());
        assert!(broken.problems[0].contains("never closed"), "{:?}", broken.problems);

        let env = site("env.example.com");
        assert!(env.db.is_none());
        assert!(env.problems[0].contains("`password` at line 1 is an expression"), "{:?}", env.problems);
        for problem in sites.iter().flat_map(|s| &s.problems) {
            assert!(!problem.contains("l3gacy") && !problem.contains("Fz!"), "a password in a message: {problem}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let db = DbCredentials {
            endpoint: Endpoint::LocalDefault,
            database: "sitemanager".into(),
            user: "bitrix0".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{db:?}").contains("hunter2"));
    }
}
