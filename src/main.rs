//! The `rill` binary: parse the command line, bind, announce, run the loop.

use rill::config::{parse_args, Command, USAGE};
use rill::server::Server;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Serve(config)) => config,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("rill {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => return usage_error(&message),
    };
    // rustls warns about client quirks it tolerates (an IP address sent
    // as SNI, as wrk and some libraries do) on every handshake: that is
    // noise beside rill's own warnings, and a write to stderr per
    // connection. Its messages show from --log-level debug on.
    let rustls_level = if config.log_level >= log::LevelFilter::Debug {
        config.log_level
    } else {
        log::LevelFilter::Error
    };
    if let Err(e) = simple_logger::SimpleLogger::new()
        .with_level(config.log_level)
        .with_module_level("rustls", rustls_level)
        .init()
    {
        eprintln!("rill: cannot start logging: {e}");
    }
    let mut server = match Server::bind(&config) {
        Ok(server) => server,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            // The TLS set-up's own message names the flag and the file.
            return usage_error(&e.to_string());
        }
        Err(e) => {
            let what = if config.root.is_dir() {
                format!("cannot listen on {}", config.listen)
            } else {
                format!("cannot serve {}", config.root.display())
            };
            return usage_error(&format!("{what}: {e}"));
        }
    };
    let addr = match server.local_addr() {
        Ok(addr) => addr,
        Err(e) => return usage_error(&format!("cannot read the bound address: {e}")),
    };
    // The first line on stdout, flushed before serving: scripts wait for it.
    let mut stdout = std::io::stdout().lock();
    let scheme = if server.tls().is_some() {
        "https"
    } else {
        "http"
    };
    let _ = writeln!(stdout, "listening on {scheme}://{addr}");
    if let Some(tls) = server.tls() {
        let _ = writeln!(stdout, "certificate sha256 fingerprint {}", tls.fingerprint);
        if let Some(pin) = &tls.pin {
            let _ = writeln!(
                stdout,
                "certificate public key pin (curl --pinnedpubkey) {pin}"
            );
        }
        if let Some(file) = &tls.cert_file {
            let _ = writeln!(
                stdout,
                "certificate saved for --cacert at {}",
                file.display()
            );
        }
    }
    let _ = stdout.flush();
    drop(stdout);
    log::info!("serving {} on {scheme}://{addr}", config.root.display());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("rill: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
