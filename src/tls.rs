//! HTTPS set-up: the certificate rill presents and the one rustls
//! configuration every TLS connection shares.
//!
//! The certificate comes from PEM files (`--tls-cert`, `--tls-key`) or is
//! made at start (`--tls-self-signed`): a P-256 key, because an ECDSA
//! signature is the cheapest part of a full handshake to make, and names for
//! `localhost`, the loopback addresses, this host's name and addresses, and
//! the address rill listens on. Its SHA-256 fingerprint and the public-key
//! pin curl takes (`--pinnedpubkey`) are printed beside the announce line, and
//! the certificate is written to a file a client can trust (`--cacert`).
//!
//! The crypto provider is aws-lc-rs, rustls's default: it builds here with
//! only a C compiler (no cmake, no nasm on x86-64 Linux), and its P-256
//! signatures and AES-GCM are the fastest rustls can use. What a connection
//! does with this configuration is in [`crate::conn::tls`].

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `--tls-cert` and `--tls-key`: a PEM chain (leaf first) and its key.
    Files { cert: PathBuf, key: PathBuf },
    /// `--tls-self-signed`: made at start.
    SelfSigned,
}

/// How many TLS 1.2 sessions are remembered for resumption by session ID
/// (TLS 1.3 clients resume with stateless tickets instead). A session is a
/// few hundred bytes: 4096 of them cost about a megabyte at most.
const SESSION_CACHE: usize = 4096;

/// TLS 1.3 tickets sent after each full handshake. One is enough for a
/// client that opens connections one after another; browsers that open six
/// at once resume the others with the same ticket (rustls allows reuse).
const TLS13_TICKETS: usize = 1;

/// The shared configuration, and what to tell the user about it.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as `AB:CD:…`.
    pub fingerprint: String,
    /// curl's `--pinnedpubkey` value for a made certificate.
    pub pin: Option<String>,
    /// Where a made certificate was written (PEM), for `--cacert`.
    pub cert_file: Option<PathBuf>,
}

/// Why `--tls-key` could not be read, said so that its owner can act: an
/// encrypted key (rustls reads only plain ones) reads as "no items found".
fn key_error(path: &std::path::Path, error: impl std::fmt::Display) -> String {
    let encrypted = std::fs::read_to_string(path).is_ok_and(|pem| {
        pem.contains("ENCRYPTED PRIVATE KEY") || pem.contains("Proc-Type: 4,ENCRYPTED")
    });
    if encrypted {
        format!(
            "--tls-key {}: the key is encrypted with a passphrase, which rill cannot ask for; \
             write a plain copy with `openssl pkey -in KEY -out PLAIN.pem` and keep it private",
            path.display()
        )
    } else {
        format!(
            "--tls-key {}: {error} (expected a PEM private key)",
            path.display()
        )
    }
}

impl Tls {
    /// Loads or makes the certificate and builds the configuration. `listen`
    /// is the bound address: a made certificate names it too.
    pub fn new(source: &CertSource, listen: SocketAddr) -> Result<Tls, String> {
        match source {
            CertSource::Files { cert, key } => {
                let chain = load_chain(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(key, e))?;
                let fingerprint = fingerprint(&chain[0]);
                Ok(Tls {
                    config: server_config(chain, key)?,
                    fingerprint,
                    pin: None,
                    cert_file: None,
                })
            }
            CertSource::SelfSigned => self_signed(listen),
        }
    }

    /// Removes the file a made certificate was written to (at exit).
    pub fn remove_cert_file(&self) {
        if let Some(path) = &self.cert_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            path.display()
        ));
    }
    Ok(chain)
}

/// TLS 1.3 and 1.2, ALPN `http/1.1`, resumption by tickets (1.3) and by
/// session ID (1.2). rustls never renegotiates and takes no early data.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    // rill speaks both: a client that offers only `http/1.0` (`curl
    // --http1.0`) would otherwise be refused the handshake (RFC 7301 §3.2
    // allows that only when none of its offers is spoken).
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("TLS session tickets: {e}"))?;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.send_tls13_tickets = TLS13_TICKETS;
    Ok(Arc::new(config))
}

/// Makes a certificate for every name a client on this host or its network
/// may use for it.
fn self_signed(listen: SocketAddr) -> Result<Tls, String> {
    let names = self_signed_names(listen);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("--tls-self-signed: making a key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| format!("--tls-self-signed: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rill self-signed");
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(24 * 3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("--tls-self-signed: signing: {e}"))?;
    let pin = {
        use base64::Engine as _;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki);
        format!(
            "sha256//{}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        )
    };
    let cert_file =
        std::env::temp_dir().join(format!("rill-{}-{}.pem", std::process::id(), listen.port()));
    write_new_file(&cert_file, cert.pem().as_bytes())
        .map_err(|e| format!("--tls-self-signed: writing {}: {e}", cert_file.display()))?;
    let der = cert.der().clone();
    let fingerprint = fingerprint(&der);
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok(Tls {
        config: server_config(vec![der], key)?,
        fingerprint,
        pin: Some(pin),
        cert_file: Some(cert_file),
    })
}

/// Writes a file that did not exist: in a shared temp folder, a file or a
/// symlink someone else put at the predictable name is removed (`unlink`
/// does not follow it) and the open refuses anything that appears again,
/// so a client given the path to trust reads rill's certificate only.
fn write_new_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(contents)
}

/// `localhost`, the loopback addresses, the host's name, every address of
/// its interfaces, and the listening address, without repeats.
fn self_signed_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    let mut addresses: Vec<IpAddr> =
        vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    if let Some(host) = host_name() {
        names.push(host);
    }
    addresses.extend(interface_addresses());
    if !listen.ip().is_unspecified() {
        addresses.push(listen.ip());
    }
    for address in addresses {
        let name = address.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname(2) writes a
    // NUL-terminated name into it (or fails).
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buffer[..end]).ok()?;
    (ok && !name.is_empty() && name != "localhost").then(|| name.to_owned())
}

/// The IPv4 and IPv6 addresses of this host's interfaces (getifaddrs(3)).
fn interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we walk read-only
    // and free once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut at = list;
        while !at.is_null() {
            let addr = (*at).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
                        // Link-local addresses need a zone, which no URL a
                        // browser takes can carry.
                        if ip.segments()[0] & 0xffc0 != 0xfe80 {
                            found.push(IpAddr::V6(ip));
                        }
                    }
                    _ => {}
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

/// SHA-256 of a certificate, the way browsers show it: `AB:CD:…`.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert);
    let mut text = String::with_capacity(95);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02X}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_certificate_names_localhost_loopback_and_the_listening_address() {
        let names = self_signed_names("10.1.2.3:443".parse().unwrap());
        for name in ["localhost", "127.0.0.1", "::1", "10.1.2.3"] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "repeats: {names:?}");
    }

    #[test]
    fn a_made_certificate_loads_into_a_config_and_its_file_is_pem() {
        let tls = Tls::new(&CertSource::SelfSigned, "127.0.0.1:0".parse().unwrap()).unwrap();
        let path = tls.cert_file.clone().unwrap();
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert_eq!(tls.fingerprint.len(), 95);
        assert!(tls.pin.as_deref().unwrap().starts_with("sha256//"));
        assert_eq!(
            tls.config.alpn_protocols,
            vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
        tls.remove_cert_file();
        assert!(!path.exists());
    }

    #[test]
    fn missing_or_empty_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let source = CertSource::Files {
            cert: empty.clone(),
            key: empty.clone(),
        };
        let error = Tls::new(&source, "127.0.0.1:0".parse().unwrap())
            .err()
            .unwrap();
        assert!(error.contains("no certificate"), "{error}");
        let source = CertSource::Files {
            cert: dir.path().join("absent.pem"),
            key: empty,
        };
        let error = Tls::new(&source, "127.0.0.1:0".parse().unwrap())
            .err()
            .unwrap();
        assert!(error.starts_with("--tls-cert"), "{error}");
    }

    #[test]
    fn a_fingerprint_is_colon_separated_upper_hex() {
        // SHA-256 of the empty input.
        assert!(fingerprint(b"").starts_with("E3:B0:C4:42:98:FC:1C:14"));
    }
}
