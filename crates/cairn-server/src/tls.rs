//! TLS on the RESP port (docs/design/tls.md).
//!
//! rustls with the `ring` provider, chosen explicitly (never the process
//! default, so another provider compiled into a test binary cannot make
//! it ambiguous). TLS 1.3 and 1.2. Redis' settings: `tls-port`,
//! `tls-cert-file`, `tls-key-file`, `tls-ca-cert-file` and
//! `tls-auth-clients` (`yes`: a client certificate signed by the CA is
//! required, Redis' default; `optional`: checked when sent; `no`).
//!
//! Certificates are reloaded without a restart: a background task looks at
//! the files' modification times every [`RELOAD_CHECK`] and, when one
//! changed, builds a new server configuration that new connections use
//! from then on (connections already open keep theirs). A reload that
//! fails (a half-written file, a key that does not match) keeps the old
//! configuration and logs why, as Redis' `CONFIG SET tls-*` refuses a bad
//! certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// How often the certificate files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);
/// A TLS handshake that has not finished by then is dropped (a client
/// that connects and says nothing must not hold a task forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `tls-auth-clients`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
    None,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Some(ClientAuth::Required),
            "optional" => Some(ClientAuth::Optional),
            "no" => Some(ClientAuth::None),
            _ => None,
        }
    }
}

/// Where the certificates come from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to; required unless
    /// client authentication is off.
    pub ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// The ring provider, named explicitly. rustls 0.23.48 marks ring's
/// `default_provider` deprecated because it lacks the post-quantum hybrid
/// key exchange (X25519MLKEM768) that aws-lc-rs has; ring is kept for now
/// (pure Rust + a little C, no cmake; STACK.md), the switch is written up
/// in docs/design/tls.md.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM reading error in words an operator can act on (the library's
/// own text shows byte arrays and Rust enum names).
fn pem_error(path: &Path, what: &str, e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let why = match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a PEM section has no -----END {}----- line: the file is cut short",
            String::from_utf8_lossy(&end_marker)
        ),
        Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".to_string(),
        Error::Base64Decode(e) => format!("the PEM body is not valid base64 ({e})"),
        Error::NoItemsFound => format!("no {what} in the file (expected PEM)"),
        Error::Io(e) => e.to_string(),
        other => other.to_string(),
    };
    format!("{}: {why}", path.display())
}

/// A certificate rustls or webpki could not use, in plain words where the
/// cause is the file's content.
fn cert_error(paths: &str, e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding) => {
            format!("{paths}: a certificate in the file is not valid DER (truncated or corrupted)")
        }
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            format!("{paths}: the private key does not match the certificate")
        }
        other => format!("{paths}: {other}"),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificate", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in the file (expected PEM)",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "private key", e))
}

/// A root store from a CA bundle file.
pub fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path)? {
        roots
            .add(c)
            .map_err(|e| cert_error(&path.display().to_string(), &e))?;
    }
    Ok(roots)
}

impl TlsFiles {
    /// Builds the server configuration from the files as they are now.
    pub fn load(&self) -> Result<ServerConfig, String> {
        let certs = read_certs(&self.cert)?;
        check_dates(&self.cert, &certs)?;
        let key = read_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?;
        let builder = match (self.client_auth, &self.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err("tls-auth-clients needs tls-ca-cert-file".into());
            }
            (auth, Some(ca)) => {
                let roots = Arc::new(read_roots(ca)?);
                let v = WebPkiClientVerifier::builder_with_provider(roots, provider());
                let v = if auth == ClientAuth::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
            }
        };
        builder.with_single_cert(certs, key).map_err(|e| {
            let paths = match e {
                rustls::Error::InvalidCertificate(_) => self.cert.display().to_string(),
                _ => format!("{} / {}", self.cert.display(), self.key.display()),
            };
            cert_error(&paths, &e)
        })
    }

    /// The peer connections' configurations: mutual TLS always (a peer
    /// must present a certificate from the CA, and this node presents its
    /// own when it dials), whatever `tls-auth-clients` says for clients.
    pub fn load_peer(&self) -> Result<(Arc<ServerConfig>, Arc<rustls::ClientConfig>), String> {
        let ca = self
            .ca
            .as_ref()
            .ok_or("TLS between cluster nodes needs tls-ca-cert-file")?;
        let roots = Arc::new(read_roots(ca)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| e.to_string())?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                {
                    let certs = read_certs(&self.cert)?;
                    check_dates(&self.cert, &certs)?;
                    certs
                },
                read_key(&self.key)?,
            )
            .map_err(|e| cert_error(&self.cert.display().to_string(), &e))?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(read_certs(&self.cert)?, read_key(&self.key)?)
            .map_err(|e| cert_error(&self.cert.display().to_string(), &e))?;
        Ok((Arc::new(server), Arc::new(client)))
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        let mut paths = vec![&self.cert, &self.key];
        paths.extend(self.ca.iter());
        paths
            .into_iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// Peer connections' server and client configurations.
pub type PeerConfigs = (Arc<ServerConfig>, Arc<rustls::ClientConfig>);

/// The configuration new TLS connections get, replaced on reload.
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<(Arc<ServerConfig>, Vec<Option<SystemTime>>)>,
    /// Cluster mode: the peer transport's, reloaded with the clients'.
    peer: RwLock<Option<PeerConfigs>>,
    reloads: std::sync::atomic::AtomicU64,
    /// Changed files that did not load (the old configuration stayed).
    reload_failures: std::sync::atomic::AtomicU64,
}

impl TlsState {
    /// `peer`: also build the peer transport's configurations.
    pub fn new(files: TlsFiles, peer: bool) -> Result<TlsState, String> {
        let stamp = files.mtimes();
        let config = Arc::new(files.load()?);
        let peer = if peer { Some(files.load_peer()?) } else { None };
        Ok(TlsState {
            files,
            current: RwLock::new((config, stamp)),
            peer: RwLock::new(peer),
            reloads: Default::default(),
            reload_failures: Default::default(),
        })
    }

    /// The peer configurations in use now (cluster mode with TLS).
    pub fn peer(&self) -> Option<PeerConfigs> {
        self.peer.read().clone()
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().0.clone())
    }

    /// Reloads when a file changed since the last load. Returns whether a
    /// new configuration was installed.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = self.files.mtimes();
        if self.current.read().1 == stamp {
            return false;
        }
        let peer = self.peer.read().is_some();
        let loaded = self.files.load().and_then(|c| {
            let p = if peer {
                Some(self.files.load_peer()?)
            } else {
                None
            };
            Ok((c, p))
        });
        match loaded {
            Ok((c, p)) => {
                *self.current.write() = (Arc::new(c), stamp);
                if p.is_some() {
                    *self.peer.write() = p;
                }
                self.reloads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificates reloaded");
                true
            }
            Err(e) => {
                // Remember the stamp so a broken file is reported once,
                // not every check; fixing it changes the stamp again.
                self.current.write().1 = stamp;
                self.reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(error = %e, "TLS certificates not reloaded, keeping the previous ones");
                false
            }
        }
    }

    /// Successful reloads since start (INFO).
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reloads refused since start (a changed file that did not load;
    /// INFO).
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One DER TLV: (tag, contents, rest). Single-byte tags; definite
/// lengths of up to 4 bytes.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, b) = b.split_first()?;
    let (len, b) = if l0 < 0x80 {
        (l0 as usize, b)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, &b[n..])
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The TBSCertificate's fields after the version: serialNumber first.
fn tbs_fields(der: &[u8]) -> Option<&[u8]> {
    const SEQ: u8 = 0x30;
    let (t, cert, _) = tlv(der)?;
    let (t2, tbs, _) = tlv(cert)?;
    if t != SEQ || t2 != SEQ {
        return None;
    }
    // [0] EXPLICIT version, when present.
    if tbs.first() == Some(&0xa0) {
        return Some(tlv(tbs)?.2);
    }
    Some(tbs)
}

/// A certificate's validity (notBefore, notAfter) in Unix seconds, from
/// the DER (UTCTime or GeneralizedTime, `Z` only); `None` when it does
/// not parse.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    // serialNumber, signature, issuer, then validity.
    let mut rest = tbs_fields(der)?;
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (t, v, _) = tlv(rest)?;
    if t != 0x30 {
        return None;
    }
    fn time(b: &[u8]) -> Option<(i64, &[u8])> {
        let (t, s, rest) = tlv(b)?;
        let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
        let (year, s) = match t {
            // UTCTime: YY, 50..99 are 19YY (RFC 5280).
            0x17 if s.len() == 12 => {
                let yy: i64 = s[..2].parse().ok()?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
            }
            0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
            _ => return None,
        };
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = |i: usize| -> i64 { s[i..i + 2].parse().unwrap_or(0) };
        let (mo, d, h, mi, se) = (n(0), n(2), n(4), n(6), n(8));
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        // Days from 1970-01-01 to the date (proleptic Gregorian).
        let (y, m) = if mo <= 2 {
            (year - 1, mo + 9)
        } else {
            (year, mo - 3)
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some((days * 86_400 + h * 3600 + mi * 60 + se, rest))
    }
    let (from, v) = time(v)?;
    let (until, _) = time(v)?;
    Some((from, until))
}

/// Refuses a certificate that has expired or is not valid yet (more than
/// five minutes ahead: clocks differ a little), naming the file.
fn check_dates(path: &Path, certs: &[CertificateDer<'static>]) -> Result<(), String> {
    let Some((from, until)) = certs.first().and_then(|c| validity(c)) else {
        return Ok(());
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if until < now {
        return Err(format!(
            "{}: the certificate expired {} days ago; renew it (`cairn cert dev` makes test ones)",
            path.display(),
            (now - until) / 86_400
        ));
    }
    if from > now + 300 {
        return Err(format!(
            "{}: the certificate is not valid yet (for {} more seconds): check the clock",
            path.display(),
            from - now
        ));
    }
    Ok(())
}

/// The subject's Common Name of a DER certificate (the first CN), for
/// `tls-auth-clients-user CN`. A small DER walk (Certificate →
/// TBSCertificate → subject Name → the attribute 2.5.4.3): only called on
/// a certificate rustls has already verified against the CA; anything it
/// does not understand is `None`.
pub fn common_name(der: &[u8]) -> Option<String> {
    const SEQ: u8 = 0x30;
    let mut rest = tbs_fields(der)?;
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (t, mut rdns, _) = tlv(rest)?;
    if t != SEQ {
        return None;
    }
    while !rdns.is_empty() {
        let (_set, mut atvs, next) = tlv(rdns)?;
        rdns = next;
        while !atvs.is_empty() {
            let (_seq, atv, next) = tlv(atvs)?;
            atvs = next;
            let (t, oid, value) = tlv(atv)?;
            if t == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (vt, v, _) = tlv(value)?;
                // UTF8String, PrintableString, IA5String, T61String.
                if matches!(vt, 0x0c | 0x13 | 0x16 | 0x14) {
                    return std::str::from_utf8(v).ok().map(str::to_owned);
                }
                return None;
            }
        }
    }
    None
}

/// Certificates for trying TLS out (`cairn cert dev`), all signed by one
/// new local CA: `ca.crt`/`ca.key`; `node.crt`/`node.key` for the
/// server, valid for `hosts` (names or IP addresses) and usable as a
/// client certificate too (peers authenticate each other with it);
/// `client.crt`/`client.key` for clients. Keys are ECDSA P-256. Files
/// that hold keys are written mode 0600. Not for production: the CA key
/// sits next to the certificates.
pub fn write_dev_certs(dir: &Path, hosts: &[String]) -> Result<Vec<PathBuf>, String> {
    write_dev_certs_dated(dir, hosts, None)
}

/// A date: year, month, day (UTC).
pub type Ymd = (i32, u8, u8);

/// [`write_dev_certs`] with the node and client certificates valid from
/// one date to another, for tests of expiry.
pub fn write_dev_certs_dated(
    dir: &Path,
    hosts: &[String],
    dates: Option<(Ymd, Ymd)>,
) -> Result<Vec<PathBuf>, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "cairn dev CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for h in hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let leaf = |cn: &str,
                sans: Vec<String>,
                ekus: Vec<ExtendedKeyUsagePurpose>|
     -> Result<(String, String), String> {
        let mut p = CertificateParams::new(sans).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = ekus;
        p.use_authority_key_identifier_extension = true;
        if let Some(((y0, m0, d0), (y1, m1, d1))) = dates {
            p.not_before = rcgen::date_time_ymd(y0, m0, d0);
            p.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &issuer).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (node_crt, node_key) = leaf(
        "cairn node",
        names,
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    // The CN names the ACL user a `tls-auth-clients-user CN` server logs
    // this client in as.
    let (client_crt, client_key) = leaf(
        "cairn-client",
        vec!["cairn-client".into()],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    )?;
    let mut written = Vec::new();
    for (name, text, secret) in [
        ("ca.crt", &ca_pem, false),
        ("ca.key", &ca_key_pem, true),
        ("node.crt", &node_crt, false),
        ("node.key", &node_key, true),
        ("client.crt", &client_crt, false),
        ("client.key", &client_key, true),
    ] {
        let path = dir.join(name);
        write_file(&path, text.as_bytes(), secret)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes through a temporary file and a rename, so a server reloading
/// the certificates never reads half a file.
fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let e = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = opts.open(&tmp).map_err(e)?;
    f.write_all(data).map_err(e)?;
    f.sync_all().map_err(e)?;
    std::fs::rename(&tmp, path).map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cairn-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn dev_certs_load_in_every_client_auth_mode() {
        let d = tmpdir("modes");
        write_dev_certs(&d, &["10.1.2.3".into(), "db.example".into()]).unwrap();
        for auth in [ClientAuth::Required, ClientAuth::Optional, ClientAuth::None] {
            let f = TlsFiles {
                cert: d.join("node.crt"),
                key: d.join("node.key"),
                ca: Some(d.join("ca.crt")),
                client_auth: auth,
            };
            f.load().unwrap();
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_common_name_is_read_and_garbage_is_none() {
        let d = tmpdir("cn");
        write_dev_certs(&d, &[]).unwrap();
        let der = |f: &str| read_certs(&d.join(f)).unwrap().remove(0);
        assert_eq!(
            common_name(&der("client.crt")).as_deref(),
            Some("cairn-client")
        );
        assert_eq!(common_name(&der("node.crt")).as_deref(), Some("cairn node"));
        assert_eq!(common_name(&der("ca.crt")).as_deref(), Some("cairn dev CA"));
        let good = der("client.crt").to_vec();
        assert_eq!(common_name(&[]), None);
        // Every truncation and many corruptions: no panic, and a cut one
        // never reads as the name.
        for n in 0..good.len() {
            assert_ne!(
                common_name(&good[..n]).as_deref(),
                Some("cairn-client"),
                "{n}"
            );
        }
        let mut x = 0x9e37_79b9u32;
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bad[i % good.len()] ^= (x & 0xff) as u8 | 1;
            let _ = common_name(&bad);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn validity_dates_are_read_and_expired_certificates_refused() {
        let d = tmpdir("dates");
        // 2049 is written as UTCTime, 2051 as GeneralizedTime.
        for (until, secs) in [
            ((2049, 12, 31), 2_524_521_600),
            ((2051, 1, 1), 2_556_144_000),
        ] {
            write_dev_certs_dated(&d, &[], Some(((2001, 2, 3), until))).unwrap();
            let der = read_certs(&d.join("node.crt")).unwrap().remove(0);
            assert_eq!(validity(&der), Some((981_158_400, secs)));
            let cut = der.to_vec();
            for n in 0..cut.len() {
                let _ = validity(&cut[..n]);
            }
        }
        let files = |d: &Path| TlsFiles {
            cert: d.join("node.crt"),
            key: d.join("node.key"),
            ca: Some(d.join("ca.crt")),
            client_auth: ClientAuth::Required,
        };
        files(&d).load().expect("valid until 2051");
        write_dev_certs_dated(&d, &[], Some(((2020, 1, 1), (2021, 1, 1)))).unwrap();
        let e = files(&d).load().unwrap_err();
        assert!(e.contains("node.crt") && e.contains("expired"), "{e}");
        write_dev_certs_dated(&d, &[], Some(((2090, 1, 1), (2091, 1, 1)))).unwrap();
        let e = files(&d).load().unwrap_err();
        assert!(e.contains("not valid yet"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_files_are_refused_with_the_path() {
        let d = tmpdir("bad");
        write_dev_certs(&d, &[]).unwrap();
        let f = TlsFiles {
            cert: d.join("node.crt"),
            // The client's key does not match the node's certificate.
            key: d.join("client.key"),
            ca: None,
            client_auth: ClientAuth::None,
        };
        assert!(f.load().is_err());
        let f = TlsFiles {
            cert: d.join("missing.crt"),
            key: d.join("node.key"),
            ca: None,
            client_auth: ClientAuth::None,
        };
        let e = f.load().unwrap_err();
        assert!(e.contains("missing.crt"), "{e}");
        let f = TlsFiles {
            cert: d.join("node.crt"),
            key: d.join("node.key"),
            ca: None,
            client_auth: ClientAuth::Required,
        };
        assert!(f.load().unwrap_err().contains("tls-ca-cert-file"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_changed_certificate_is_reloaded_and_a_broken_one_is_not() {
        let d = tmpdir("reload");
        write_dev_certs(&d, &[]).unwrap();
        let files = TlsFiles {
            cert: d.join("node.crt"),
            key: d.join("node.key"),
            ca: Some(d.join("ca.crt")),
            client_auth: ClientAuth::Optional,
        };
        let state = TlsState::new(files, true).unwrap();
        assert!(state.peer().is_some());
        assert!(!state.reload_if_changed());
        // New certificates (a new CA too): mtimes change, reload happens.
        std::thread::sleep(Duration::from_millis(20));
        write_dev_certs(&d, &[]).unwrap();
        assert!(state.reload_if_changed());
        assert_eq!(state.reloads(), 1);
        // A certificate that does not match the key: kept the old one.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::copy(d.join("client.crt"), d.join("node.crt")).unwrap();
        assert!(!state.reload_if_changed());
        assert_eq!(state.reloads(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
