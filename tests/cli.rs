//! The command line: help, version, the announce line, and clear errors.

mod common;

use common::{site, Rill};
use std::net::TcpListener;
use std::process::Command;

fn rill(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rill"))
        .args(args)
        .output()
        .expect("run rill")
}

#[test]
fn help_and_version() {
    let help = rill(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--listen", "--log-level", "--help", "--version", "ROOT"] {
        assert!(text.contains(flag), "help lacks {flag}");
    }
    let version = rill(&["-V"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("rill 0."));
}

#[test]
fn bad_usage_exits_with_2_and_a_message() {
    let dir = site();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let root = dir.path().to_str().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.path().join("cert.pem");
    std::fs::write(&cert_file, params.self_signed(&key).unwrap().pem()).unwrap();
    let encrypted_key = dir.path().join("key.pem");
    // What `openssl genpkey -aes256` writes; rustls reads only plain keys.
    std::fs::write(
        &encrypted_key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let (cert, enc) = (cert_file.to_str().unwrap(), encrypted_key.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--tls-cert", cert, "--tls-key", enc, root],
            "the key is encrypted",
        ),
        (vec!["--frobnicate"], "frobnicate"),
        (vec!["--log-level", "loud"], "log level"),
        (
            vec!["-l", "127.0.0.1:0", "/definitely/not/here"],
            "/definitely/not/here",
        ),
        (vec!["-l", taken_addr.as_str(), root], "cannot listen"),
        (vec!["--overwrite", root], "--overwrite needs --uploads"),
    ];
    for (args, mention) in cases {
        let output = rill(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(mention), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn announces_the_real_port_first() {
    let dir = site();
    let rill = Rill::start(dir.path(), &[]);
    assert_ne!(rill.addr.port(), 0);
    assert_eq!(rill.get("/").status, 200);
}
