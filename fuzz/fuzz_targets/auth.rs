//! `Authorization` values and `--auth` specs on arbitrary text: parsing
//! never panics, a gate never allows what the only user's password does not
//! open, and an accepted credential round-trips through base64.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use rill::auth::{basic_credentials, Gate, Need, User, Verdict};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = User::parse_arg(text);
    let _ = User::parse_file(text);
    if let Some((user, password)) = basic_credentials(text) {
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        assert_eq!(basic_credentials(&again), Some((user, password)));
    }
    let mut ann = User::parse_arg("ann:the right one").unwrap();
    ann.settle_rights(true);
    let gate = Gate::new(vec![ann], false);
    let peer = std::net::IpAddr::from([10, 0, 0, 1]);
    let verdict = gate.check(Some(text), Need::Upload, peer, Instant::now());
    if verdict == Verdict::Allowed {
        assert_eq!(
            basic_credentials(text),
            Some(("ann".to_owned(), "the right one".to_owned()))
        );
    }
});
