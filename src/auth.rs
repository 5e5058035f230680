//! Who may do what: the `--auth` users, their rights, and the verdict on a
//! request's `Authorization` header — decided without I/O, with the time
//! passed in, so every rule is unit-tested without a socket or a clock.
//!
//! - A user has a password given on the command line (`--auth`) or a bcrypt
//!   hash from a file (`--auth-file`, the format `htpasswd -B` writes), and
//!   the rights `read` (GET, HEAD) and/or `upload` (POST, PUT).
//! - Passwords are compared in constant time: digests of equal length, so
//!   neither the bytes nor the length of a guess leak through timing.
//! - A bcrypt check takes tens of milliseconds — on the one thread, every
//!   other connection would wait that long. So it runs on the hashing
//!   thread ([`crate::hasher`]): [`Gate::slow_check`] says which credentials
//!   need it, and [`Gate::settle`] takes its verdict. Credentials checked
//!   once are remembered ([`VERIFIED_CACHE`] entries each, right and wrong),
//!   and a header value seen verified costs one hash-map lookup, whatever
//!   the password's format.
//! - Failed attempts are counted per client address; past
//!   [`FAILURES_ALLOWED`] within [`FAILURE_WINDOW`] the address is locked
//!   out (`429`) for [`LOCKOUT`]. That also bounds how many slow checks one
//!   address can make the loop do.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed attempts allowed per address within [`FAILURE_WINDOW`].
pub const FAILURES_ALLOWED: u32 = 10;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long an address that failed too often gets `429`.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Verified `Authorization` values remembered.
pub const VERIFIED_CACHE: usize = 64;
/// Addresses whose failures are tracked; past this the oldest are dropped.
const TRACKED_ADDRESSES: usize = 4096;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights {
    pub read: bool,
    pub upload: bool,
}

/// How a user's password is known.
#[derive(Clone, PartialEq, Eq)]
enum Secret {
    /// Given in clear on the command line: kept as a digest, compared in
    /// constant time.
    Plain([u8; 20]),
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt(String),
}

/// One `--auth` or `--auth-file` user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    secret: Secret,
    /// `None` until the defaults are known (read, plus upload with
    /// `--uploads`; see [`User::settle_rights`]).
    rights: Option<Rights>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a password or a hash in a log.
        f.debug_struct("User")
            .field("name", &self.name)
            .field("rights", &self.rights)
            .finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(bytes).digest().bytes()
}

/// `a == b` in time that does not depend on where they differ.
fn same_digest(a: &[u8; 20], b: &[u8; 20]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits off a last field that is exactly a rights list.
fn split_rights(text: &str) -> (&str, Option<Rights>) {
    let rights = |field: &str| match field {
        "read" => Some(Rights {
            read: true,
            upload: false,
        }),
        "upload" => Some(Rights {
            read: false,
            upload: true,
        }),
        "read,upload" | "upload,read" => Some(Rights {
            read: true,
            upload: true,
        }),
        _ => None,
    };
    match text.rsplit_once(':') {
        Some((rest, last)) => match rights(last) {
            Some(rights) => (rest, Some(rights)),
            None => (text, None),
        },
        None => (text, None),
    }
}

impl User {
    /// `USER:PASSWORD[:RIGHTS]`. The password may contain `:`; only a last
    /// field of exactly `read`, `upload` or `read,upload` is taken as rights.
    pub fn parse_arg(text: &str) -> Result<User, String> {
        let (name, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("--auth needs USER:PASSWORD (got '{text}')"))?;
        let (password, rights) = split_rights(rest);
        if name.is_empty() || password.is_empty() {
            return Err("--auth needs a user name and a password".to_owned());
        }
        Ok(User {
            name: name.to_owned(),
            secret: Secret::Plain(digest(password.as_bytes())),
            rights,
        })
    }

    /// One `USER:HASH[:RIGHTS]` line of an `--auth-file`.
    pub fn parse_line(line: &str) -> Result<User, String> {
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| "expected USER:HASH".to_owned())?;
        let (hash, rights) = split_rights(rest);
        let bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
        if name.is_empty() || !bcrypt {
            return Err("expected USER:HASH with a bcrypt hash (htpasswd -B)".to_owned());
        }
        if hash.parse::<bcrypt::HashParts>().is_err() || hash.contains(':') {
            // A misspelt rights field would otherwise be taken as part of
            // the hash, and the user could never log in.
            return Err(format!(
                "'{}' is not a bcrypt hash, or the rights after it are not read, upload or read,upload",
                hash.split(':').next().unwrap_or(hash)
            ));
        }
        Ok(User {
            name: name.to_owned(),
            secret: Secret::Bcrypt(hash.to_owned()),
            rights,
        })
    }

    /// Reads an `--auth-file`: one user per line; empty lines and lines
    /// starting with `#` are skipped.
    pub fn parse_file(text: &str) -> Result<Vec<User>, String> {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
            .map(|(i, line)| {
                User::parse_line(line.trim()).map_err(|e| format!("line {}: {e}", i + 1))
            })
            .collect()
    }

    /// Gives rights to a user who was given none: read, plus upload when
    /// there is somewhere to send changes (`--uploads` into ROOT, or the
    /// backend of a `--route`, which gets every method but reads).
    pub fn settle_rights(&mut self, changes_accepted: bool) {
        self.rights.get_or_insert(Rights {
            read: true,
            upload: changes_accepted,
        });
    }

    /// A name given twice (in the file, or by `--auth` and the file) would
    /// silently hide the second: refused.
    pub fn check_unique(users: &[User]) -> Result<(), String> {
        for (i, user) in users.iter().enumerate() {
            if users[..i].iter().any(|u| u.name == user.name) {
                return Err(format!("the user '{}' is given twice", user.name));
            }
        }
        Ok(())
    }

    fn is_slow(&self) -> bool {
        matches!(self.secret, Secret::Bcrypt(_))
    }

    fn rights(&self) -> Rights {
        self.rights.unwrap_or(Rights {
            read: true,
            upload: false,
        })
    }

    /// Whether `password` is this user's. Slow for a bcrypt hash.
    fn verify(&self, password: &str) -> bool {
        match &self.secret {
            Secret::Plain(expected) => same_digest(expected, &digest(password.as_bytes())),
            Secret::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// A password to check against a bcrypt hash, off the loop
/// ([`crate::hasher`]).
pub struct SlowCheck {
    key: Verified,
    /// The user it would log in, if the name is known.
    user: Option<usize>,
    password: String,
    hash: String,
}

impl SlowCheck {
    /// What identifies the credentials checked.
    pub fn key(&self) -> &[u8; 20] {
        &self.key
    }

    /// Runs the slow hash: whether the password matches.
    pub fn run(&self) -> bool {
        bcrypt::verify(&self.password, &self.hash).unwrap_or(false)
    }
}

impl std::fmt::Debug for SlowCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a password or a hash in a log.
        f.debug_struct("SlowCheck")
            .field("user", &self.user)
            .finish()
    }
}

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `GET` and `HEAD` of the folder.
    Read,
    /// Everything that may change something: `POST`, `PUT`, and any other
    /// method a route's backend might act on (`DELETE`, `PATCH`, …).
    Upload,
    /// The loop's own `/.rill/` pages: the read right, and credentials
    /// even with `--public-read`.
    Inspect,
}

/// The answer to a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Allowed,
    /// `401` with `WWW-Authenticate`: no credentials, or wrong ones.
    Unauthorized,
    /// `403`: a known user without the right asked for.
    Forbidden,
    /// `429`: this address failed too often; try again after this long.
    Locked(Duration),
}

/// How much one address may still fail (or make rill run a slow hash):
/// a bucket of [`FAILURES_ALLOWED`] tokens that refills one token per
/// `FAILURE_WINDOW / FAILURES_ALLOWED`, so no burst beats the rate.
#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f64,
    at: Instant,
    locked_until: Option<Instant>,
}

impl Budget {
    fn full(now: Instant) -> Budget {
        Budget {
            tokens: f64::from(FAILURES_ALLOWED),
            at: now,
            locked_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let per_token = FAILURE_WINDOW.as_secs_f64() / f64::from(FAILURES_ALLOWED);
        let earned = now.saturating_duration_since(self.at).as_secs_f64() / per_token;
        self.tokens = (self.tokens + earned).min(f64::from(FAILURES_ALLOWED));
        self.at = now;
    }

    fn is_spent(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// A verified credential, as the cache knows it.
type Verified = [u8; 20];

/// The users and what the gate remembers between requests.
#[derive(Debug, Default)]
pub struct Gate {
    users: Vec<User>,
    public_read: bool,
    /// Header values seen verified, exactly as sent: the warm path, one
    /// hash-map lookup.
    verified_headers: RefCell<HashMap<Box<str>, usize>>,
    /// The same, keyed by what they decode to, so another spelling of a
    /// verified credential (`bAsIc`, more spaces) costs a digest, not a
    /// slow hash.
    verified: RefCell<HashMap<Verified, usize>>,
    /// Credentials a slow check found wrong, so asking again with them
    /// costs no second one (the value is unused).
    refused: RefCell<HashMap<Verified, usize>>,
    budgets: RefCell<HashMap<IpAddr, Budget>>,
    /// A hash to check a password against when the name is unknown, so a
    /// wrong name takes as long as a wrong password.
    decoy: Option<String>,
}

impl Gate {
    /// A gate for `users` (no users: everything is allowed).
    pub fn new(users: Vec<User>, public_read: bool) -> Gate {
        // At the highest cost in the file: with mixed costs, a wrong name
        // then takes as long as a wrong password for the slowest users
        // (the first user's cost made unknown names of a cost-12 file with
        // one cost-5 line a hundred times faster than its real ones).
        let decoy_cost = users
            .iter()
            .filter_map(|user| match &user.secret {
                Secret::Bcrypt(hash) => Some(
                    hash.parse::<bcrypt::HashParts>()
                        .map_or(10, |h| h.get_cost()),
                ),
                Secret::Plain(_) => None,
            })
            .max();
        let decoy = decoy_cost.and_then(|cost| {
            bcrypt::hash_with_salt("rill decoy", cost, [42; 16])
                .ok()
                .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
        });
        Gate {
            users,
            public_read,
            decoy,
            ..Gate::default()
        }
    }

    /// Whether any credentials are asked for at all.
    pub fn is_on(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether some credentials take a slow hash to check (a bcrypt user).
    pub fn has_slow_checks(&self) -> bool {
        self.decoy.is_some()
    }

    /// The slow hash [`Gate::check`] would run for this request, if it would
    /// run one: a bcrypt user's credentials not checked before, or an
    /// unknown name (checked against a decoy, so it takes as long). Run it
    /// off the loop, [`Gate::settle`] its verdict, and `check` answers at
    /// once. `None`: `check` needs no slow hash. Costs nothing; queuing the
    /// check costs `peer` a try ([`Gate::charge_slow_check`]).
    pub fn slow_check(
        &self,
        authorization: Option<&str>,
        need: Need,
        peer: IpAddr,
        now: Instant,
    ) -> Option<SlowCheck> {
        if !self.is_on() || (self.public_read && need == Need::Read) {
            return None;
        }
        let value = authorization?;
        if self.locked(peer, now).is_some() || self.verified_headers.borrow().contains_key(value) {
            return None;
        }
        let (name, password) = basic_credentials(value)?;
        let key = credential_key(&name, &password);
        if self.verified.borrow().contains_key(&key) || self.refused.borrow().contains_key(&key) {
            return None;
        }
        let user = self.users.iter().position(|u| u.name == name);
        let hash = match user.map(|i| &self.users[i].secret) {
            Some(Secret::Bcrypt(hash)) => hash.clone(),
            Some(Secret::Plain(_)) => return None,
            None => self.decoy.clone()?,
        };
        Some(SlowCheck {
            key,
            user,
            password,
            hash,
        })
    }

    /// A slow check was queued for `peer`: it spends a try, right or wrong,
    /// as one run by [`Gate::check`] does.
    pub fn charge_slow_check(&self, peer: IpAddr, now: Instant) {
        self.spend(peer, now);
    }

    /// Remembers what a slow check found.
    pub fn settle(&self, check: &SlowCheck, right: bool) {
        match check.user.filter(|_| right) {
            Some(user) => insert_bounded(&mut self.verified.borrow_mut(), check.key, user),
            None => insert_bounded(&mut self.refused.borrow_mut(), check.key, 0),
        }
    }

    /// The verdict on a request from `peer` that needs `need`, carrying
    /// `authorization` (the header's value, if any). A wrong or malformed
    /// header, and every slow hash check, spends from `peer`'s budget; a
    /// missing header does not (a browser asks without credentials first).
    pub fn check(
        &self,
        authorization: Option<&str>,
        need: Need,
        peer: IpAddr,
        now: Instant,
    ) -> Verdict {
        self.decide(authorization, need, peer, now, false)
    }

    /// [`Gate::check`] for a request whose credentials the hashing thread
    /// has just checked ([`Gate::slow_check`]), a check its address already
    /// paid a try for: wrong, they cost nothing more, and a lockout that
    /// this very try started does not hide the verdict. So ten wrong
    /// passwords get ten `401`s, then `429`, as with plain ones.
    pub fn check_after_slow_check(
        &self,
        authorization: Option<&str>,
        need: Need,
        peer: IpAddr,
        now: Instant,
    ) -> Verdict {
        self.decide(authorization, need, peer, now, true)
    }

    fn decide(
        &self,
        authorization: Option<&str>,
        need: Need,
        peer: IpAddr,
        now: Instant,
        paid: bool,
    ) -> Verdict {
        if !self.is_on() || (self.public_read && need == Need::Read) {
            return Verdict::Allowed;
        }
        if let Some(wait) = self.locked(peer, now).filter(|_| !paid) {
            return Verdict::Locked(wait);
        }
        let Some(value) = authorization else {
            return Verdict::Unauthorized;
        };
        let cached = self.verified_headers.borrow().get(value).copied();
        let user = match cached.or_else(|| self.verify(value, peer, now)) {
            Some(user) => user,
            None => {
                if !paid {
                    self.spend(peer, now);
                }
                return Verdict::Unauthorized;
            }
        };
        let rights = self.users[user].rights();
        let allowed = match need {
            Need::Read | Need::Inspect => rights.read,
            Need::Upload => rights.upload,
        };
        if allowed {
            Verdict::Allowed
        } else {
            Verdict::Forbidden
        }
    }

    /// Checks a header value not seen before; remembers it if it is right.
    fn verify(&self, value: &str, peer: IpAddr, now: Instant) -> Option<usize> {
        let (name, password) = basic_credentials(value)?;
        let key = credential_key(&name, &password);
        if self.refused.borrow().contains_key(&key) {
            return None;
        }
        let known = self.verified.borrow().get(&key).copied();
        let index = match known {
            Some(index) => index,
            None => {
                let index = self.users.iter().position(|u| u.name == name);
                let slow = index.map_or(self.decoy.is_some(), |i| self.users[i].is_slow());
                if slow {
                    // A slow hash on the one thread: it costs the address
                    // a token, right or wrong.
                    self.spend(peer, now);
                }
                let right = match index {
                    Some(i) => self.users[i].verify(&password),
                    None => {
                        if let Some(decoy) = &self.decoy {
                            let _ = bcrypt::verify(&password, decoy);
                        } else {
                            let _ = digest(password.as_bytes());
                        }
                        false
                    }
                };
                let index = index.filter(|_| right)?;
                insert_bounded(&mut self.verified.borrow_mut(), key, index);
                index
            }
        };
        insert_bounded(
            &mut self.verified_headers.borrow_mut(),
            Box::from(value),
            index,
        );
        Some(index)
    }

    /// How long `peer` is still locked out, if it is.
    fn locked(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let budgets = self.budgets.borrow();
        let until = budgets.get(&peer)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Takes a token from `peer`'s budget; the last one locks it out.
    fn spend(&self, peer: IpAddr, now: Instant) {
        let mut budgets = self.budgets.borrow_mut();
        if budgets.len() >= TRACKED_ADDRESSES && !budgets.contains_key(&peer) {
            // Forget the addresses whose budget is full again; never one
            // that is locked out.
            budgets.retain(|_, budget| {
                budget.refill(now);
                budget.is_spent(now) || budget.tokens < f64::from(FAILURES_ALLOWED)
            });
            if budgets.len() >= TRACKED_ADDRESSES {
                budgets.retain(|_, budget| budget.is_spent(now));
            }
        }
        let budget = budgets.entry(peer).or_insert_with(|| Budget::full(now));
        budget.refill(now);
        budget.tokens -= 1.0;
        if budget.tokens < 1.0 && !budget.is_spent(now) {
            budget.locked_until = Some(now + LOCKOUT);
            budget.tokens = 0.0;
            budget.at = now + LOCKOUT;
            log::warn!("{peer}: too many failed logins; answering 429 for {LOCKOUT:?}");
        }
    }
}

/// What a verified credential is remembered by: a digest of the name and
/// password, never the password itself.
fn credential_key(name: &str, password: &str) -> Verified {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(name.as_bytes());
    sha.update(&[0]);
    sha.update(password.as_bytes());
    sha.digest().bytes()
}

/// Inserts into a cache of at most [`VERIFIED_CACHE`] entries, evicting one
/// when it is full (never all: the users already in stay warm).
fn insert_bounded<K: std::hash::Hash + Eq + Clone>(
    cache: &mut HashMap<K, usize>,
    key: K,
    value: usize,
) {
    if cache.len() >= VERIFIED_CACHE && !cache.contains_key(&key) {
        if let Some(evicted) = cache.keys().next().cloned() {
            cache.remove(&evicted);
        }
    }
    cache.insert(key, value);
}

/// The user and password of a `Basic` credential (RFC 7617): the scheme in
/// any case, base64 of `user:password` in UTF-8. `None` for anything else.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(credentials: &str) -> String {
        format!("Basic {}", BASE64.encode(credentials))
    }

    fn gate(args: &[&str], uploads: bool, public_read: bool) -> Gate {
        let users = args
            .iter()
            .map(|a| {
                let mut user = User::parse_arg(a).unwrap();
                user.settle_rights(uploads);
                user
            })
            .collect();
        Gate::new(users, public_read)
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn arguments_split_rights_only_from_an_exact_last_field() {
        let user = User::parse_arg("ann:pa:ss:read,upload").unwrap();
        assert_eq!(user.name, "ann");
        assert!(user.verify("pa:ss"));
        assert_eq!(
            user.rights,
            Some(Rights {
                read: true,
                upload: true
            })
        );
        let user = User::parse_arg("bob:pass:word").unwrap();
        assert!(user.verify("pass:word"), "word is no right");
        assert_eq!(user.rights, None);
        let user = User::parse_arg("cy:x:upload").unwrap();
        assert_eq!(
            user.rights,
            Some(Rights {
                read: false,
                upload: true
            })
        );
        assert!(User::parse_arg("nobody").is_err());
        assert!(User::parse_arg(":pw").is_err());
        assert!(User::parse_arg("u:").is_err());
        assert!(!format!("{user:?}").contains('x'), "no secret in Debug");
    }

    #[test]
    fn default_rights_follow_uploads() {
        let g = gate(&["ann:pw"], false, false);
        let ann = header("ann:pw");
        assert_eq!(
            g.check(Some(&ann), Need::Read, PEER, Instant::now()),
            Verdict::Allowed
        );
        assert_eq!(
            g.check(Some(&ann), Need::Upload, PEER, Instant::now()),
            Verdict::Forbidden
        );
        let g = gate(&["ann:pw"], true, false);
        assert_eq!(
            g.check(Some(&ann), Need::Upload, PEER, Instant::now()),
            Verdict::Allowed
        );
    }

    #[test]
    fn every_right_on_every_need() {
        let g = gate(
            &["r:1:read", "u:2:upload", "ru:3:read,upload"],
            false,
            false,
        );
        let now = Instant::now();
        let cases = [
            ("r:1", Verdict::Allowed, Verdict::Forbidden),
            ("u:2", Verdict::Forbidden, Verdict::Allowed),
            ("ru:3", Verdict::Allowed, Verdict::Allowed),
        ];
        for (credentials, read, upload) in cases {
            let value = header(credentials);
            assert_eq!(
                g.check(Some(&value), Need::Read, PEER, now),
                read,
                "{credentials}"
            );
            assert_eq!(
                g.check(Some(&value), Need::Upload, PEER, now),
                upload,
                "{credentials}"
            );
        }
    }

    #[test]
    fn wrong_missing_and_malformed_credentials_are_401() {
        let g = gate(&["ann:pw", "zoé:mot de passe é"], false, false);
        let now = Instant::now();
        for value in [
            header("ann:wrong"),
            header("ann:"),
            header("bob:pw"),
            header("annpw"),
            "Basic !!!".to_owned(),
            "Basic".to_owned(),
            "Bearer abc".to_owned(),
            format!("Basic {}", BASE64.encode(b"ann:\xff")),
        ] {
            let peer: IpAddr = "10.0.0.1".parse().unwrap();
            assert_eq!(
                g.check(Some(&value), Need::Read, peer, now),
                Verdict::Unauthorized,
                "{value}"
            );
        }
        assert_eq!(g.check(None, Need::Read, PEER, now), Verdict::Unauthorized);
        // Non-ASCII names and passwords, and the scheme in any case.
        let zoe = format!("bAsIc {}", BASE64.encode("zoé:mot de passe é"));
        assert_eq!(g.check(Some(&zoe), Need::Read, PEER, now), Verdict::Allowed);
    }

    #[test]
    fn public_read_needs_credentials_only_to_upload() {
        let g = gate(&["ann:pw"], true, true);
        let now = Instant::now();
        assert_eq!(g.check(None, Need::Read, PEER, now), Verdict::Allowed);
        assert_eq!(
            g.check(None, Need::Upload, PEER, now),
            Verdict::Unauthorized
        );
        assert_eq!(
            g.check(Some(&header("ann:pw")), Need::Upload, PEER, now),
            Verdict::Allowed
        );
        assert_eq!(
            Gate::new(Vec::new(), false).check(None, Need::Upload, PEER, now),
            Verdict::Allowed
        );
    }

    #[test]
    fn too_many_failures_lock_an_address_out_for_a_while() {
        let g = gate(&["ann:pw"], false, false);
        let t0 = Instant::now();
        let bad = header("ann:guess");
        let good = header("ann:pw");
        let other: IpAddr = "192.168.1.9".parse().unwrap();
        for i in 0..FAILURES_ALLOWED {
            assert_eq!(
                g.check(Some(&bad), Need::Read, PEER, t0),
                Verdict::Unauthorized,
                "{i}"
            );
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            g.check(Some(&good), Need::Read, PEER, later),
            Verdict::Locked(LOCKOUT - Duration::from_secs(1))
        );
        assert_eq!(
            g.check(Some(&good), Need::Read, other, later),
            Verdict::Allowed,
            "others are not"
        );
        assert_eq!(
            g.check(None, Need::Read, other, later),
            Verdict::Unauthorized
        );
        let after = t0 + LOCKOUT;
        assert_eq!(
            g.check(Some(&good), Need::Read, PEER, after),
            Verdict::Allowed,
            "it expires"
        );
        // Failures at the refill rate never lock; a burst at a window's
        // edge gets no more than the budget.
        let g = gate(&["ann:pw"], false, false);
        let per_token = FAILURE_WINDOW / FAILURES_ALLOWED;
        for i in 0..FAILURES_ALLOWED * 3 {
            let at = t0 + per_token * i;
            g.check(Some(&bad), Need::Read, PEER, at);
            assert!(
                !matches!(
                    g.check(Some(&good), Need::Read, PEER, at),
                    Verdict::Locked(_)
                ),
                "{i}"
            );
        }
        let g = gate(&["ann:pw"], false, false);
        g.check(Some(&bad), Need::Read, PEER, t0);
        let edge = t0 + FAILURE_WINDOW - Duration::from_secs(1);
        let mut failures = 1;
        while !matches!(
            g.check(Some(&bad), Need::Read, PEER, edge),
            Verdict::Locked(_)
        ) {
            failures += 1;
        }
        assert!(
            failures <= FAILURES_ALLOWED + 1,
            "{failures} failures in a burst"
        );
        // A missing header is no failure.
        let g = gate(&["ann:pw"], false, false);
        for _ in 0..FAILURES_ALLOWED * 2 {
            g.check(None, Need::Read, PEER, t0);
        }
        assert_eq!(g.check(Some(&good), Need::Read, PEER, t0), Verdict::Allowed);
    }

    #[test]
    fn bcrypt_hashes_are_checked_once_and_remembered_in_a_bounded_cache() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let mut user = User::parse_line(&format!("ann:{hash}:read")).unwrap();
        user.settle_rights(false);
        let g = Gate::new(vec![user], false);
        let now = Instant::now();
        let good = header("ann:s3cret");
        assert_eq!(
            g.check(Some(&good), Need::Read, PEER, now),
            Verdict::Allowed
        );
        assert_eq!(g.verified.borrow().len(), 1);
        assert_eq!(
            g.check(Some(&header("ann:nope")), Need::Read, PEER, now),
            Verdict::Unauthorized
        );
        assert_eq!(
            g.verified.borrow().len(),
            1,
            "wrong ones are not remembered"
        );
        // Endless spellings of the right credential (the scheme's case,
        // spaces) stay bounded and cost no more slow hashes: the address
        // that sends them is never locked out by them either.
        let other: IpAddr = "10.9.9.9".parse().unwrap();
        for i in 0..VERIFIED_CACHE * 3 {
            let scheme: String = "basic"
                .chars()
                .enumerate()
                .map(|(j, c)| {
                    if i >> j & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            let value = format!(
                "{scheme}{}{}",
                " ".repeat(1 + i / 32),
                BASE64.encode("ann:s3cret")
            );
            assert_eq!(
                g.check(Some(&value), Need::Read, other, now),
                Verdict::Allowed,
                "{i}"
            );
            assert!(g.verified_headers.borrow().len() <= VERIFIED_CACHE);
        }
        assert_eq!(
            g.verified.borrow().len(),
            1,
            "one credential, whatever its spelling"
        );
    }

    #[test]
    fn an_unknown_name_is_checked_at_the_highest_cost_in_the_file() {
        let user = |name: &str, cost: u32| {
            let hash = bcrypt::hash_with_salt("pw", cost, [1; 16])
                .unwrap()
                .format_for_version(bcrypt::Version::TwoB);
            User::parse_line(&format!("{name}:{hash}")).unwrap()
        };
        let g = Gate::new(vec![user("fast", 4), user("slow", 6)], false);
        let decoy = g.decoy.as_deref().unwrap();
        assert_eq!(decoy.parse::<bcrypt::HashParts>().unwrap().get_cost(), 6);
    }

    #[test]
    fn auth_files_take_bcrypt_lines_and_nothing_else() {
        let hash = bcrypt::hash_with_salt("pw", 4, [1; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let users =
            User::parse_file(&format!("# users\n\nann:{hash}\nbob:{hash}:upload\n")).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            users[1].rights,
            Some(Rights {
                read: false,
                upload: true
            })
        );
        assert!(User::parse_file("ann:plaintext\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(User::parse_file("no-colon\n").is_err());
        assert!(
            User::parse_file("bob:$2b$10$x\n").is_err(),
            "not a whole hash"
        );
        let misspelt = User::parse_file(&format!("ann:{hash}:read,write\n")).unwrap_err();
        assert!(misspelt.contains("rights"), "{misspelt}");
        assert!(User::check_unique(&users).is_ok());
        let twice = User::parse_file(&format!("ann:{hash}\nann:{hash}\n")).unwrap();
        assert!(User::check_unique(&twice).is_err());
    }

    #[test]
    fn an_unknown_name_takes_a_slow_check_like_a_known_one() {
        let hash = bcrypt::hash_with_salt("pw", 4, [1; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB);
        let mut user = User::parse_line(&format!("ann:{hash}")).unwrap();
        user.settle_rights(false);
        let g = Gate::new(vec![user], false);
        assert!(g.decoy.is_some(), "a decoy of the same cost");
        assert!(
            gate(&["ann:pw"], false, false).decoy.is_none(),
            "no slow hashes, no decoy"
        );
        let now = Instant::now();
        // Unknown names spend the budget too: they cost a slow check.
        for _ in 0..FAILURES_ALLOWED {
            g.check(Some(&header("nobody:x")), Need::Read, PEER, now);
        }
        assert!(matches!(
            g.check(None, Need::Read, PEER, now),
            Verdict::Locked(_)
        ));
    }

    #[test]
    fn the_loops_pages_need_credentials_even_with_public_read() {
        let g = gate(&["ann:pw:read"], false, true);
        let now = Instant::now();
        assert_eq!(g.check(None, Need::Read, PEER, now), Verdict::Allowed);
        assert_eq!(
            g.check(None, Need::Inspect, PEER, now),
            Verdict::Unauthorized
        );
        assert_eq!(
            g.check(Some(&header("ann:pw")), Need::Inspect, PEER, now),
            Verdict::Allowed
        );
    }

    #[test]
    fn digests_compare_whole() {
        let a = digest(b"a");
        let mut b = a;
        assert!(same_digest(&a, &b));
        b[19] ^= 1;
        assert!(!same_digest(&a, &b));
    }
}
