//! The command line: `rill [OPTIONS] [ROOT]`, parsed into a [`Config`].

use lexopt::prelude::*;
use log::LevelFilter;
use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

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
  -h, --help              print this help
  -V, --version           print the version
";

/// Everything rill needs to start serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub log_level: LevelFilter,
}

/// What the command line asks for.
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
    let mut log_level = LevelFilter::Info;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('l') | Long("listen") => listen = string_value(&mut parser, "--listen")?,
            Long("log-level") => {
                let level = string_value(&mut parser, "--log-level")?;
                log_level = match level.to_ascii_lowercase().as_str() {
                    "error" => LevelFilter::Error,
                    "warn" => LevelFilter::Warn,
                    "info" => LevelFilter::Info,
                    "debug" => LevelFilter::Debug,
                    "trace" => LevelFilter::Trace,
                    "off" => LevelFilter::Off,
                    _ => return Err(format!("unknown log level '{level}'")),
                }
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
    Ok(Command::Serve(Config {
        root: root.unwrap_or_else(|| PathBuf::from(".")),
        listen: parse_listen(&listen)?,
        log_level,
    }))
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
    fn errors() {
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--listen", "nonsense"]).is_err());
        assert!(parse(&["--log-level", "loud"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
    }
}
