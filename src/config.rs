//! The command line: `rill [OPTIONS] [ROOT]`, parsed into a [`Config`].

use crate::auth::User;
use crate::route::{sort_routes, Route};
use lexopt::prelude::*;
use log::LevelFilter;
use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The address rill listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

/// Usage text for `--help` and for errors.
pub const USAGE: &str = "\
Usage: rill [OPTIONS] [ROOT]

Serve the folder ROOT (default: the current folder) over HTTP/1.1.

Options:
  -l, --listen ADDR       address to listen on (default 127.0.0.1:4000; port 0 picks a free port;
                          a bare port means 127.0.0.1:PORT)
      --log-level LEVEL   error, warn, info, debug or trace (default info: one line per response)
      --uploads           accept uploads: POST multipart/form-data to a folder, PUT to a file
      --overwrite         with --uploads, let PUT replace an existing file (atomically)
      --max-body SIZE     largest upload body, with K/M/G suffixes (default 1G)
      --cors              add Access-Control-Allow-Origin: * and answer OPTIONS preflights
      --no-sendfile       send file bodies with read+write instead of sendfile(2)
                          (for file systems where sendfile misbehaves, or to compare)
      --stats             serve the loop's counters: /.rill/ (live page), /.rill/stats (JSON),
                          /.rill/events (Server-Sent Events)
      --header-timeout SECS  a request head or upload body that stalls this long is dropped
                          (408 for a half-sent head; default 10)
      --idle-timeout SECS  a keep-alive connection with nothing to do, or a client that reads
                          nothing of its answer, is closed after this long (default 60)
      --max-connections N  most connections at once; more get 503 (default 10000, capped by
                          the open-file limit)
      --route PREFIX=UPSTREAM  send paths under PREFIX to another server (repeatable; the
                          longest PREFIX wins; other paths are served from ROOT).
                          UPSTREAM = HOST:PORT passes the path unchanged; HOST:PORT/PATH
                          replaces PREFIX with /PATH
      --proxy-connect-timeout SECS  a backend that does not accept in this long: 504 (default 3)
      --proxy-timeout SECS  a backend silent this long while rill waits for its answer:
                          504 before the head, close after (default 60)
      --tunnel-timeout SECS  an upgraded connection (WebSocket) with no bytes either way
                          is closed after this long (default 600)
      --live-reload       watch ROOT and reload the pages open on it when a file changes:
                          HTML answers get a <script src=\"/.rill/live.js\"> appended, which
                          listens on a WebSocket (/.rill/live); CSS-only changes restyle in place
      --no-watch          do not watch ROOT with inotify; cached files are then looked at again
                          every second (for file systems inotify cannot see, like network mounts)
      --auth USER:PASSWORD[:RIGHTS]  ask for a password (repeatable); RIGHTS = read, upload or
                          read,upload (default: read, plus upload with --uploads or --route,
                          whose backends take every other method). The password
                          may contain ':'; only an exact last field is taken as rights
      --auth-file FILE    users from FILE, one USER:HASH[:RIGHTS] per line, HASH bcrypt
                          (as `htpasswd -nB USER` prints it)
      --public-read       with --auth: reading needs no password, uploading does
      --tls-cert FILE --tls-key FILE  serve HTTPS with this PEM certificate chain (leaf
                          first) and key, instead of HTTP
      --tls-self-signed   serve HTTPS with a certificate made at start for localhost, the
                          loopback addresses and this host's; its SHA-256 fingerprint, curl's
                          --pinnedpubkey value and a PEM file for --cacert are printed at start
  -h, --help              print this help
  -V, --version           print the version
";

/// Everything rill needs to start serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub log_level: LevelFilter,
    /// Accept POST and PUT uploads.
    pub uploads: bool,
    /// Let PUT replace existing files.
    pub overwrite: bool,
    /// Largest request body accepted, in bytes.
    pub max_body: u64,
    /// Send CORS headers and answer preflights.
    pub cors: bool,
    /// How long a request head or upload body may stall.
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection, or a stalled reader, is kept.
    pub idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Serve `/.rill/` stats.
    pub stats: bool,
    /// Send file bodies with read+write rather than `sendfile(2)`.
    pub no_sendfile: bool,
    /// `--route`s, longest prefix first.
    pub routes: Vec<Route>,
    /// How long a backend may take to accept a connection.
    pub proxy_connect_timeout: Duration,
    /// How long a backend may stay silent while rill waits for its answer.
    pub proxy_timeout: Duration,
    /// How long an upgraded connection may carry no bytes either way.
    pub tunnel_timeout: Duration,
    /// Watch the whole tree and push reloads to open pages.
    pub live_reload: bool,
    /// Do not watch ROOT with inotify (revalidate the cache every second).
    pub no_watch: bool,
    /// `--auth` and `--auth-file` users; none: no credentials asked for.
    pub users: Vec<User>,
    /// With users: reading needs no credentials.
    pub public_read: bool,
    /// Serve HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<crate::tls::CertSource>,
}

/// The default `--max-body`: 1 GiB.
pub const DEFAULT_MAX_BODY: u64 = 1 << 30;

impl Config {
    /// A configuration with every default, serving `root`.
    pub fn new(root: PathBuf) -> Config {
        Config {
            root,
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            log_level: LevelFilter::Info,
            uploads: false,
            overwrite: false,
            max_body: DEFAULT_MAX_BODY,
            cors: false,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            stats: false,
            no_sendfile: false,
            routes: Vec::new(),
            proxy_connect_timeout: Duration::from_secs(3),
            proxy_timeout: Duration::from_secs(60),
            tunnel_timeout: Duration::from_secs(600),
            live_reload: false,
            no_watch: false,
            users: Vec::new(),
            public_read: false,
            tls: None,
        }
    }
}

/// What the command line asks for.
// Made once per run; boxing the config would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve(Config),
    Help,
    Version,
}

/// Parses the arguments after the program name.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut root: Option<PathBuf> = None;
    let mut listen = String::from(DEFAULT_LISTEN);
    let (mut tls_cert, mut tls_key, mut self_signed) = (None, None, false);
    let mut config = Config::new(PathBuf::from("."));
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('l') | Long("listen") => listen = string_value(&mut parser, "--listen")?,
            Long("log-level") => {
                let level = string_value(&mut parser, "--log-level")?;
                config.log_level = match level.to_ascii_lowercase().as_str() {
                    "error" => LevelFilter::Error,
                    "warn" => LevelFilter::Warn,
                    "info" => LevelFilter::Info,
                    "debug" => LevelFilter::Debug,
                    "trace" => LevelFilter::Trace,
                    "off" => LevelFilter::Off,
                    _ => return Err(format!("unknown log level '{level}'")),
                }
            }
            Long("uploads") => config.uploads = true,
            Long("overwrite") => config.overwrite = true,
            Long("cors") => config.cors = true,
            Long("stats") => config.stats = true,
            Long("no-sendfile") => config.no_sendfile = true,
            Long("live-reload") => config.live_reload = true,
            Long("auth") => config
                .users
                .push(User::parse_arg(&string_value(&mut parser, "--auth")?)?),
            Long("auth-file") => {
                let path = PathBuf::from(parser.value().map_err(|e| e.to_string())?);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--auth-file {}: {e}", path.display()))?;
                let users = User::parse_file(&text)
                    .map_err(|e| format!("--auth-file {}: {e}", path.display()))?;
                config.users.extend(users);
            }
            Long("public-read") => config.public_read = true,
            Long("tls-cert") => {
                tls_cert = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("tls-key") => {
                tls_key = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?))
            }
            Long("tls-self-signed") => self_signed = true,
            Long("no-watch") => config.no_watch = true,
            Long("max-body") => {
                let text = string_value(&mut parser, "--max-body")?;
                config.max_body = parse_size(&text)
                    .ok_or_else(|| format!("invalid --max-body '{text}' (try 500M or 2G)"))?;
            }
            Long("header-timeout") => {
                config.header_timeout = seconds(&string_value(&mut parser, "--header-timeout")?)?
            }
            Long("idle-timeout") => {
                config.idle_timeout = seconds(&string_value(&mut parser, "--idle-timeout")?)?
            }
            Long("max-connections") => {
                let text = string_value(&mut parser, "--max-connections")?;
                config.max_connections = text
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("invalid --max-connections '{text}'"))?;
            }
            Long("route") => config
                .routes
                .push(Route::parse(&string_value(&mut parser, "--route")?)?),
            Long("proxy-connect-timeout") => {
                config.proxy_connect_timeout =
                    seconds(&string_value(&mut parser, "--proxy-connect-timeout")?)?
            }
            Long("proxy-timeout") => {
                config.proxy_timeout = seconds(&string_value(&mut parser, "--proxy-timeout")?)?
            }
            Long("tunnel-timeout") => {
                config.tunnel_timeout = seconds(&string_value(&mut parser, "--tunnel-timeout")?)?
            }
            Value(value) if root.is_none() => root = Some(PathBuf::from(value)),
            Value(value) => {
                return Err(format!(
                    "only one ROOT may be given (got a second: '{}')",
                    value.to_string_lossy()
                ))
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if let Some(root) = root {
        config.root = root;
    }
    config.listen = parse_listen(&listen)?;
    config.tls = match (tls_cert, tls_key, self_signed) {
        (None, None, false) => None,
        (None, None, true) => Some(crate::tls::CertSource::SelfSigned),
        (Some(cert), Some(key), false) => Some(crate::tls::CertSource::Files { cert, key }),
        (Some(_), None, false) => return Err("--tls-cert needs --tls-key".to_owned()),
        (None, Some(_), false) => return Err("--tls-key needs --tls-cert".to_owned()),
        (_, _, true) => {
            return Err(
                "--tls-self-signed makes its own certificate: drop --tls-cert/--tls-key".to_owned(),
            )
        }
    };
    if config.overwrite && !config.uploads {
        // Alone it would be silently ignored, and a user who meant to allow
        // uploads would find every PUT refused.
        return Err("--overwrite needs --uploads".to_owned());
    }
    if config.public_read && config.users.is_empty() {
        return Err("--public-read needs --auth or --auth-file".to_owned());
    }
    User::check_unique(&config.users)?;
    for user in &mut config.users {
        user.settle_rights(config.uploads || !config.routes.is_empty());
    }
    if config.live_reload && config.no_watch {
        return Err("--live-reload needs the watch that --no-watch turns off".to_owned());
    }
    sort_routes(&mut config.routes)?;
    Ok(Command::Serve(config))
}

/// A positive number of seconds, fractions allowed (`0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("invalid number of seconds '{text}'"))
}

/// `1048576`, `512K`, `100M`, `2G`, `1GiB`: binary multiples.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = text[..digits].parse().ok()?;
    let shift = match text[digits..].to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

fn string_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| format!("{flag} needs a UTF-8 value"))
}

/// `127.0.0.1:4000`, `[::1]:0`, `localhost:8080`, or a bare port.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .map_err(|e| format!("invalid --listen address '{text}': {e}"))?
        .next()
        .ok_or_else(|| format!("--listen address '{text}' resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults() {
        let Ok(Command::Serve(config)) = parse(&[]) else {
            panic!("expected a config")
        };
        assert_eq!(config.root, PathBuf::from("."));
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.log_level, LevelFilter::Info);
        assert!(!config.uploads && !config.overwrite && !config.cors);
        assert_eq!(config.max_body, 1 << 30);
        assert_eq!(config.header_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 10_000);
    }

    #[test]
    fn limits_and_timeouts() {
        let Ok(Command::Serve(config)) = parse(&[
            "--header-timeout",
            "0.5",
            "--idle-timeout",
            "3",
            "--max-connections",
            "50",
        ]) else {
            panic!("expected a config")
        };
        assert_eq!(config.header_timeout, Duration::from_millis(500));
        assert_eq!(config.idle_timeout, Duration::from_secs(3));
        assert_eq!(config.max_connections, 50);
        for bad in [
            &["--header-timeout", "0"][..],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "soon"],
            &["--max-connections", "0"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upload_flags_and_sizes() {
        let Ok(Command::Serve(config)) =
            parse(&["--uploads", "--overwrite", "--cors", "--max-body", "2G"])
        else {
            panic!("expected a config")
        };
        assert!(config.uploads && config.overwrite && config.cors);
        assert_eq!(config.max_body, 2 << 30);
        assert_eq!(parse_size("512k"), Some(512 * 1024));
        assert_eq!(parse_size("100MiB"), Some(100 << 20));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert!(parse(&["--max-body", "lots"]).is_err());
    }

    #[test]
    fn flags() {
        let Ok(Command::Serve(config)) = parse(&["-l", "[::1]:0", "--log-level", "trace", "/srv"])
        else {
            panic!("expected a config")
        };
        assert_eq!(config.listen.to_string(), "[::1]:0");
        assert_eq!(config.log_level, LevelFilter::Trace);
        assert_eq!(config.root, PathBuf::from("/srv"));
        let Ok(Command::Serve(config)) = parse(&["--listen=8080"]) else {
            panic!("expected a config")
        };
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(parse(&["-h"]), Ok(Command::Help));
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn routes_and_proxy_timeouts() {
        let Ok(Command::Serve(config)) = parse(&[
            "--route",
            "/api=127.0.0.1:3000",
            "--route=/api/v2=127.0.0.1:3001/v2",
            "--proxy-connect-timeout",
            "0.5",
            "--proxy-timeout",
            "5",
            "--tunnel-timeout",
            "30",
        ]) else {
            panic!("expected a config")
        };
        let prefixes: Vec<&str> = config.routes.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/api/v2", "/api"], "longest first");
        assert_eq!(config.proxy_connect_timeout, Duration::from_millis(500));
        assert_eq!(config.proxy_timeout, Duration::from_secs(5));
        assert_eq!(config.tunnel_timeout, Duration::from_secs(30));
        let Ok(Command::Serve(defaults)) = parse(&[]) else {
            panic!("expected a config")
        };
        assert_eq!(defaults.proxy_connect_timeout, Duration::from_secs(3));
        assert_eq!(defaults.proxy_timeout, Duration::from_secs(60));
        assert_eq!(defaults.tunnel_timeout, Duration::from_secs(600));
        assert!(parse(&["--route", "/a=127.0.0.1:1", "--route", "/a/=127.0.0.1:2"]).is_err());
        assert!(parse(&["--route", "nowhere"]).is_err());
    }

    #[test]
    fn errors() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--listen", "nonsense"]).is_err());
        assert!(parse(&["--log-level", "loud"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["--live-reload", "--no-watch"]).is_err());
    }

    #[test]
    fn auth_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        let hash = bcrypt::hash_with_salt("pw", 4, [5; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        std::fs::write(&file, format!("bob:{hash}:upload\n")).unwrap();
        let Ok(Command::Serve(config)) = parse(&[
            "--auth",
            "ann:pw",
            "--auth-file",
            file.to_str().unwrap(),
            "--public-read",
        ]) else {
            panic!("expected a config")
        };
        assert_eq!(config.users.len(), 2);
        assert!(config.public_read);
        assert!(parse(&["--public-read"]).is_err());
        assert!(parse(&["--overwrite"]).is_err());
        assert!(parse(&["--auth", "nocolon"]).is_err());
        assert!(parse(&["--auth-file", "/nonexistent/users"]).is_err());
        assert!(parse(&["--auth", "bob:x", "--auth-file", file.to_str().unwrap()]).is_err());
    }

    #[test]
    fn watch_flags() {
        let Ok(Command::Serve(config)) = parse(&["--live-reload"]) else {
            panic!("expected a config")
        };
        assert!(config.live_reload && !config.no_watch);
        let Ok(Command::Serve(config)) = parse(&["--no-watch"]) else {
            panic!("expected a config")
        };
        assert!(config.no_watch && !config.live_reload);
    }

    #[test]
    fn tls_flags() {
        let Ok(Command::Serve(config)) = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"])
        else {
            panic!("expected a config")
        };
        assert_eq!(
            config.tls,
            Some(crate::tls::CertSource::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        let Ok(Command::Serve(config)) = parse(&["--tls-self-signed"]) else {
            panic!("expected a config")
        };
        assert_eq!(config.tls, Some(crate::tls::CertSource::SelfSigned));
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["--tls-key", "k.pem"]).is_err());
        assert!(parse(&[
            "--tls-self-signed",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem"
        ])
        .is_err());
    }
}
