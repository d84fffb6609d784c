//! TLS on the RESP port with real clients: the redis crate (rustls),
//! redis-cli --tls and redis-py with ssl; client certificates required,
//! optional or refused as configured; a plain client on the TLS port, a
//! client without a certificate or with one from another CA are refused
//! and the server keeps serving; new certificate files are picked up
//! without a restart, while connections already open keep working.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use redis::{ClientTlsConfig, TlsCertificates};

struct Node {
    handle: Option<cairn_server::ServerHandle>,
    dir: PathBuf,
}

impl Node {
    fn start(name: &str, auth_clients: &str) -> Node {
        Self::start_with(name, auth_clients, |_| {})
    }

    fn start_with(
        name: &str,
        auth_clients: &str,
        more: impl FnOnce(&mut cairn_server::Config),
    ) -> Node {
        let dir =
            std::env::temp_dir().join(format!("cairn-tls-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        cairn_server::tls::write_dev_certs(&dir, &[]).expect("certificates");
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let mut config = cairn_server::Config {
            port: 0,
            tls_port: Some(0),
            tls_cert_file: path("node.crt"),
            tls_key_file: path("node.key"),
            tls_ca_cert_file: path("ca.crt"),
            tls_auth_clients: auth_clients.into(),
            ..Default::default()
        };
        more(&mut config);
        let handle = cairn_server::start(config).expect("server starts");
        Node {
            handle: Some(handle),
            dir,
        }
    }

    fn tls_port(&self) -> u16 {
        self.handle
            .as_ref()
            .and_then(|h| h.tls_addr())
            .expect("TLS on")
            .port()
    }

    fn plain(&self) -> redis::Connection {
        let addr = self.handle.as_ref().expect("running").local_addr();
        redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A TLS connection trusting `ca_dir`'s CA, with `ca_dir`'s client
    /// certificate when `with_cert`.
    fn tls(&self, ca_dir: &Path, with_cert: bool) -> redis::RedisResult<redis::Connection> {
        let read = |f: &str| std::fs::read(ca_dir.join(f)).unwrap();
        let certs = TlsCertificates {
            client_tls: with_cert.then(|| ClientTlsConfig {
                client_cert: read("client.crt"),
                client_key: read("client.key"),
            }),
            root_cert: Some(read("ca.crt")),
        };
        let client = redis::Client::build_with_tls(
            format!("rediss://127.0.0.1:{}/", self.tls_port()),
            certs,
        )?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(5))?;
        // A refused client certificate shows at the first exchange (TLS
        // 1.3 finishes the client's side of the handshake first).
        match redis::cmd("PING").query::<String>(&mut c) {
            // Connected; the server wants a login (requirepass).
            Err(e) if e.to_string().contains("NOAUTH") => Ok(c),
            Err(e) => Err(e),
            Ok(_) => Ok(c),
        }
    }

    fn handshake_failures(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut self.plain())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("tls_handshake_failures:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("tls_handshake_failures in INFO")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            h.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_redis_crate_redis_cli_and_redis_py_talk_tls_with_client_certificates() {
    let node = Node::start("clients", "yes");
    let dir = node.dir.clone();
    let mut c = node.tls(&dir, true).expect("TLS client with a certificate");
    let _: () = redis::cmd("SET").arg("k").arg("v1").query(&mut c).unwrap();
    // A pipeline of 2000 commands: replies span many TLS records.
    let mut p = redis::pipe();
    for _ in 0..2000 {
        p.cmd("INCR").arg("n");
    }
    let replies: Vec<i64> = p.query(&mut c).unwrap();
    assert_eq!(replies.last(), Some(&2000));
    // A value bigger than one TLS record (16 KiB) both ways.
    let big = vec![b'x'; 300_000];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert_eq!(back, big);

    // redis-cli --tls, reading what the crate wrote.
    let f = |n: &str| node.file(n).to_string_lossy().into_owned();
    let out = Command::new("redis-cli")
        .args(["-p", &node.tls_port().to_string(), "--tls"])
        .args([
            "--cacert",
            &f("ca.crt"),
            "--cert",
            &f("client.crt"),
            "--key",
            &f("client.key"),
        ])
        .args(["GET", "k"])
        .output()
        .expect("redis-cli is installed (scripts/test.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v1", "{out:?}");

    // redis-py with ssl (Debian's python3-redis: /usr/bin/python3).
    let script = format!(
        "import redis\n\
         r = redis.Redis(host='127.0.0.1', port={}, ssl=True, ssl_ca_certs='{}', ssl_certfile='{}', ssl_keyfile='{}')\n\
         r.set('py', 'from-python')\n\
         print(r.get('k').decode(), r.incr('n'))\n",
        node.tls_port(),
        f("ca.crt"),
        f("client.crt"),
        f("client.key")
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3 with python3-redis (scripts/test.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "v1 2001",
        "{out:?}"
    );
    let py: String = redis::cmd("GET")
        .arg("py")
        .query(&mut node.plain())
        .unwrap();
    assert_eq!(py, "from-python");
}

#[test]
fn clients_without_a_good_certificate_are_refused_and_the_server_keeps_serving() {
    let node = Node::start("refuse", "yes");
    let own = node.dir.clone();
    assert!(node.tls(&own, false).is_err(), "no client certificate");
    // Certificates from another CA: the server does not trust the client
    // and the client does not trust the server.
    let other = std::env::temp_dir().join(format!("cairn-tls-test-other-{}", std::process::id()));
    cairn_server::tls::write_dev_certs(&other, &[]).unwrap();
    assert!(node.tls(&other, true).is_err(), "another CA");
    // Plain RESP on the TLS port gets no reply: the handshake fails.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", node.tls_port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            !buf[..n].starts_with(b"+PONG"),
            "plain text answered on the TLS port"
        );
    }
    assert!(node.handshake_failures() >= 3);
    // Still serving, on both ports.
    let mut c = node.tls(&own, true).unwrap();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let pong: String = redis::cmd("PING").query(&mut node.plain()).unwrap();
    assert_eq!(pong, "PONG");
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn client_certificates_can_be_optional_or_off() {
    let node = Node::start("optional", "optional");
    let dir = node.dir.clone();
    node.tls(&dir, false)
        .expect("optional: no certificate is fine");
    node.tls(&dir, true)
        .expect("optional: a good certificate is fine");
    drop(node);
    let node = Node::start("off", "no");
    let dir = node.dir.clone();
    node.tls(&dir, false).expect("no: no certificate needed");
}

#[test]
fn new_certificate_files_are_used_without_a_restart() {
    let node = Node::start("reload", "yes");
    let old = std::env::temp_dir().join(format!("cairn-tls-test-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    std::fs::create_dir_all(&old).unwrap();
    for f in ["ca.crt", "client.crt", "client.key"] {
        std::fs::copy(node.file(f), old.join(f)).unwrap();
    }
    let mut before = node.tls(&old, true).expect("first certificates");
    // New CA and certificates written over the configured files.
    cairn_server::tls::write_dev_certs(&node.dir, &[]).unwrap();
    let dir = node.dir.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.tls(&dir, true).is_err() {
        assert!(Instant::now() < deadline, "new certificates never used");
        std::thread::sleep(Duration::from_millis(100));
    }
    // New connections need the new CA now; the old connection lives on.
    assert!(node.tls(&old, true).is_err());
    let pong: String = redis::cmd("PING").query(&mut before).unwrap();
    assert_eq!(pong, "PONG");
    let info: String = redis::cmd("INFO").arg("stats").query(&mut before).unwrap();
    assert!(info.contains("tls_cert_reloads:1"), "{info}");
    let _ = std::fs::remove_dir_all(&old);
}

/// `tls-auth-clients-user CN`: a client with a certificate whose Common
/// Name is an enabled ACL user is that user from the first command, no
/// AUTH; a plain client still needs the password; without such a user
/// the certificate logs nobody in.
#[test]
fn a_client_certificate_logs_in_as_the_user_its_common_name_names() {
    let node = Node::start_with("cn", "yes", |c| {
        c.tls_auth_clients_user = "CN".into();
        c.requirepass = "adminpw".into();
    });
    let dir = node.dir.clone();
    // No user "cairn-client" yet: the certificate alone opens nothing.
    let mut c = node.tls(&dir, true).expect("TLS client");
    let e = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("NOAUTH"), "{e}");
    let mut admin = node.plain();
    let _: () = redis::cmd("AUTH").arg("adminpw").query(&mut admin).unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "cairn-client",
            "on",
            "~app:*",
            "+get",
            "+set",
            "+acl",
            "+ping",
        ])
        .query(&mut admin)
        .unwrap();
    let mut c = node.tls(&dir, true).expect("TLS client");
    let who: String = redis::cmd("ACL").arg("WHOAMI").query(&mut c).unwrap();
    assert_eq!(who, "cairn-client");
    let _: () = redis::cmd("SET")
        .arg("app:1")
        .arg("v")
        .query(&mut c)
        .unwrap();
    // Its permissions, not the default user's.
    let e = redis::cmd("SET")
        .arg("other")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string().to_uppercase().contains("NOPERM") || e.to_string().contains("permission"),
        "{e}"
    );
    // A disabled user is not logged in by its certificate.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "cairn-client", "off"])
        .query(&mut admin)
        .unwrap();
    let mut c = node.tls(&dir, true).expect("TLS client");
    let e = redis::cmd("GET")
        .arg("app:1")
        .query::<Option<String>>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("NOAUTH"), "{e}");
}

/// Bad input on the TLS side: a client certificate that expired (from a
/// CA the server trusts), a handshake of garbage and a TLS record that
/// claims 16 MB are refused and counted; the server keeps serving; a
/// server certificate that expired stops the start with a clear error.
#[test]
fn expired_certificates_and_garbage_handshakes_are_refused_and_the_server_keeps_serving() {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let pki = std::env::temp_dir().join(format!("cairn-tls-test-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pki);
    std::fs::create_dir_all(&pki).unwrap();
    // A CA of the test's own, and two client certificates from it: one
    // valid, one that expired in 2021.
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(pki.join("ca.crt"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    for (name, until) in [("valid", 4000), ("expired", 2021)] {
        let mut p = CertificateParams::new(vec!["client".to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(until, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(pki.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(pki.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
    let ca_file = pki.join("ca.crt").to_string_lossy().into_owned();
    let node = Node::start_with("expiry", "yes", |c| c.tls_ca_cert_file = ca_file.clone());
    let client = |name: &str| {
        let read = |f: String| std::fs::read(pki.join(f)).unwrap();
        let certs = TlsCertificates {
            client_tls: Some(ClientTlsConfig {
                client_cert: read(format!("{name}.crt")),
                client_key: read(format!("{name}.key")),
            }),
            root_cert: Some(std::fs::read(node.file("ca.crt")).unwrap()),
        };
        let c = redis::Client::build_with_tls(
            format!("rediss://127.0.0.1:{}/", node.tls_port()),
            certs,
        )?;
        let mut c = c.get_connection_with_timeout(Duration::from_secs(5))?;
        redis::cmd("PING").query::<String>(&mut c)
    };
    assert_eq!(client("valid").unwrap(), "PONG");
    let before = node.handshake_failures();
    assert!(client("expired").is_err(), "an expired certificate got in");
    // Garbage instead of a ClientHello, and a record header that claims
    // far more than a TLS record may hold.
    {
        use std::io::{Read, Write};
        let mut x = 0x2545_f491u32;
        let garbage: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for bytes in [
            &garbage[..],
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00][..],
        ] {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", node.tls_port())).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let _ = s.write_all(bytes);
            let mut buf = [0u8; 256];
            // An alert at most, then the close (within the 10 s handshake limit).
            let start = Instant::now();
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || start.elapsed() > Duration::from_secs(14) {
                    break;
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.handshake_failures() < before + 3 {
        assert!(Instant::now() < deadline, "refusals not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(client("valid").unwrap(), "PONG", "still serving TLS");
    let pong: String = redis::cmd("PING").query(&mut node.plain()).unwrap();
    assert_eq!(pong, "PONG");
    // A server whose own certificate expired does not start.
    let dir = pki.join("server");
    cairn_server::tls::write_dev_certs_dated(&dir, &[], Some(((2020, 1, 1), (2021, 1, 1))))
        .unwrap();
    let e = start_tls_from(&dir)
        .err()
        .expect("an expired server certificate was accepted");
    assert!(e.to_string().contains("expired"), "{e}");
    drop(node);
    let _ = std::fs::remove_dir_all(&pki);
}

/// Ways to spoil a PEM certificate file, from a good one: not PEM at
/// all, a PEM envelope around text that is not base64, a body cut in
/// half (valid base64, truncated DER), a file cut before its END line,
/// and an empty file.
fn spoiled(good_pem: &str) -> Vec<(&'static str, String)> {
    let lines: Vec<&str> = good_pem.lines().collect();
    let body: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    let half = body.len() / 2;
    let truncated = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        body[..half].join("\n")
    );
    let unterminated = format!("-----BEGIN CERTIFICATE-----\n{}\n", body[..half].join("\n"));
    vec![
        ("not PEM", "this is not a certificate\n".to_string()),
        (
            "bad base64",
            "-----BEGIN CERTIFICATE-----\n%%%% not base64 at all %%%%\n-----END CERTIFICATE-----\n"
                .to_string(),
        ),
        ("truncated body", truncated),
        ("no END line", unterminated),
        ("empty", String::new()),
    ]
}

/// Writes `text` over `path` by rename, as an operator should (so the
/// reload task never reads half a file).
fn replace_file(path: &Path, text: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn info_stat(node: &Node, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut node.plain())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO: {info}"))
}

/// A malformed certificate, key or CA file stops start-up with an error
/// that names the file; written over a running node's files, it is not
/// loaded (counted in `tls_cert_reload_failures`), the node keeps serving
/// with the certificates it had, and the good file put back is loaded.
#[test]
fn malformed_certificate_files_fail_start_up_naming_the_file_and_a_reload_keeps_the_old_ones() {
    let base = std::env::temp_dir().join(format!("cairn-tls-test-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let good = base.join("good");
    cairn_server::tls::write_dev_certs(&good, &[]).unwrap();
    let good_cert = std::fs::read_to_string(good.join("node.crt")).unwrap();
    let good_ca = std::fs::read_to_string(good.join("ca.crt")).unwrap();
    let mut cases: Vec<(&str, &str, String)> = Vec::new();
    for (how, text) in spoiled(&good_cert) {
        cases.push(("node.crt", how, text));
    }
    for (how, text) in spoiled(&good_ca) {
        cases.push(("ca.crt", how, text));
    }
    cases.push(("node.key", "not PEM", "not a key\n".into()));
    cases.push(("node.key", "empty", String::new()));
    // Start-up: refused, naming the file.
    for (i, (file, how, text)) in cases.iter().enumerate() {
        let dir = base.join(format!("start-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["node.crt", "node.key", "ca.crt"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        std::fs::write(dir.join(file), text).unwrap();
        let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let e = start_tls_from(&dir)
            .err()
            .unwrap_or_else(|| panic!("{file} ({how}) was accepted at start-up"));
        assert!(
            e.to_string().contains(&path(file)),
            "{file} ({how}): the error does not name the file: {e}"
        );
        // ... and says what is wrong with it.
        let why = match (*file, *how) {
            ("node.key", _) => "no private key in the file",
            (_, "not PEM" | "empty") => "no certificate in the file",
            (_, "bad base64") => "not valid base64",
            (_, "truncated body") => "not valid DER (truncated or corrupted)",
            (_, "no END line") => "the file is cut short",
            _ => unreachable!(),
        };
        assert!(e.to_string().contains(why), "{file} ({how}): {e}");
    }
    // Reload: the running node keeps its certificates.
    let node = Node::start("badreload", "yes");
    let orig = base.join("orig");
    std::fs::create_dir_all(&orig).unwrap();
    for f in ["ca.crt", "client.crt", "client.key", "node.crt", "node.key"] {
        std::fs::copy(node.file(f), orig.join(f)).unwrap();
    }
    let mut open = node.tls(&orig, true).expect("first certificates");
    // One of each kind (each costs two reload checks).
    let picked = [
        ("node.crt", "not PEM"),
        ("node.crt", "bad base64"),
        ("node.crt", "truncated body"),
        ("ca.crt", "empty"),
        ("node.key", "not PEM"),
    ];
    for (file, how, text) in cases.iter().filter(|(f, h, _)| picked.contains(&(*f, *h))) {
        let failures = info_stat(&node, "tls_cert_reload_failures");
        let reloads = info_stat(&node, "tls_cert_reloads");
        replace_file(&node.file(file), text.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(20);
        while info_stat(&node, "tls_cert_reload_failures") == failures {
            assert!(
                Instant::now() < deadline,
                "{file} ({how}): the reload was never tried"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            info_stat(&node, "tls_cert_reloads"),
            reloads,
            "{file} ({how}) was loaded"
        );
        // New connections are served with the certificates it had.
        let mut c = node
            .tls(&orig, true)
            .unwrap_or_else(|e| panic!("{file} ({how}): not serving TLS: {e}"));
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        // The good file back: loaded.
        replace_file(&node.file(file), &std::fs::read(orig.join(file)).unwrap());
        while info_stat(&node, "tls_cert_reloads") == reloads {
            assert!(
                Instant::now() < deadline,
                "{file} ({how}): the good file put back was never loaded"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let pong: String = redis::cmd("PING").query(&mut open).unwrap();
    assert_eq!(pong, "PONG", "the connection open throughout");
    drop(node);
    let _ = std::fs::remove_dir_all(&base);
}

/// Presents whatever certificate chain it was given, with a real key:
/// what a client with a corrupted certificate file sends on the wire
/// (rustls' own builders would refuse to load it).
#[derive(Debug)]
struct Presents(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Presents {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A rustls client configuration trusting `ca` and presenting `chain`
/// (signing with `key`) when given, for `versions`.
fn rustls_client(
    ca: &Path,
    client: Option<(Vec<u8>, &Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = cairn_server::tls::provider();
    let roots = cairn_server::tls::read_roots(ca).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => b.with_no_client_auth(),
        Some((der, key)) => {
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            let key = provider.key_provider.load_private_key(key).unwrap();
            let ck = rustls::sign::CertifiedKey::new(vec![der.into()], key);
            b.with_client_cert_resolver(std::sync::Arc::new(Presents(std::sync::Arc::new(ck))))
        }
    };
    std::sync::Arc::new(config)
}

/// PING over TLS with `config`: the reply's bytes and the version
/// negotiated, or why it failed.
fn rustls_ping(
    port: u16,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<(Vec<u8>, Option<rustls::ProtocolVersion>), String> {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("closed".into());
    }
    Ok((buf[..n].to_vec(), conn.protocol_version()))
}

/// A client presenting a corrupted certificate (a flipped byte in the
/// signed part, a flipped byte in the signature, the DER cut short) is
/// refused; the same client with the intact certificate, clients already
/// connected and plain clients are served.
#[test]
fn a_client_presenting_a_corrupted_certificate_is_refused_and_others_are_served() {
    use rustls::pki_types::pem::PemObject;
    let node = Node::start("corrupt", "yes");
    let mut open = node.tls(&node.dir.clone(), true).unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_file(node.file("client.crt"))
        .unwrap()
        .to_vec();
    let all = &[&rustls::version::TLS13, &rustls::version::TLS12][..];
    let ca = node.file("ca.crt");
    let key = node.file("client.key");
    // The harness itself works: the intact certificate gets PONG.
    let (reply, _) = rustls_ping(
        node.tls_port(),
        rustls_client(&ca, Some((der.clone(), &key)), all),
    )
    .expect("the intact certificate is accepted");
    assert_eq!(reply, b"+PONG\r\n");
    let mut in_tbs = der.clone();
    in_tbs[der.len() / 3] ^= 0x01;
    let mut in_sig = der.clone();
    let last = der.len() - 3;
    in_sig[last] ^= 0x5a;
    let cut = der[..der.len() / 2].to_vec();
    let before = node.handshake_failures();
    for (how, bad) in [
        ("signed part", in_tbs),
        ("signature", in_sig),
        ("cut short", cut),
    ] {
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            let r = rustls_ping(
                node.tls_port(),
                rustls_client(&ca, Some((bad.clone(), &key)), versions),
            );
            assert!(
                !matches!(&r, Ok((reply, _)) if reply.starts_with(b"+PONG")),
                "corrupted ({how}) certificate served over {versions:?}: {r:?}"
            );
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.handshake_failures() < before + 6 {
        assert!(Instant::now() < deadline, "refusals not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pong: String = redis::cmd("PING").query(&mut open).unwrap();
    assert_eq!(pong, "PONG");
    let mut c = node.tls(&node.dir.clone(), true).unwrap();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let pong: String = redis::cmd("PING").query(&mut node.plain()).unwrap();
    assert_eq!(pong, "PONG");
}

/// The RESP port speaks TLS 1.2 as well as 1.3 (Redis' default
/// `tls-protocols`): a client limited to either completes a PING, with
/// its client certificate, and gets the version it asked for.
#[test]
fn a_tls_1_2_client_is_served_on_the_resp_port() {
    use rustls::pki_types::pem::PemObject;
    let node = Node::start("tls12", "yes");
    let der = rustls::pki_types::CertificateDer::from_pem_file(node.file("client.crt"))
        .unwrap()
        .to_vec();
    let ca = node.file("ca.crt");
    let key = node.file("client.key");
    for (version, want) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let (reply, got) = rustls_ping(
            node.tls_port(),
            rustls_client(&ca, Some((der.clone(), &key)), &[version]),
        )
        .unwrap_or_else(|e| panic!("{want:?}: {e}"));
        assert_eq!(reply, b"+PONG\r\n", "{want:?}");
        assert_eq!(got, Some(want));
    }
    // Without a client certificate, 1.2 is refused as 1.3 is.
    let r = rustls_ping(
        node.tls_port(),
        rustls_client(&ca, None, &[&rustls::version::TLS12]),
    );
    assert!(r.is_err(), "{r:?}");
    // openssl s_client -tls1_2, a client that is not rustls.
    let port = node.tls_port().to_string();
    let mut s = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-quiet", "-no_ign_eof"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(&ca)
        .arg("-cert")
        .arg(node.file("client.crt"))
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    // Keep stdin open until the reply is in (s_client quits at EOF).
    let mut stdin = s.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"PING\r\n").unwrap();
    let stdout = s.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    drop(stdin);
    let _ = s.kill();
    let out = s.wait_with_output().unwrap();
    assert_eq!(
        line,
        "+PONG\r\n",
        "openssl -tls1_2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a server with a TLS port on `dir`'s node.crt, node.key and
/// ca.crt (what `cairn cert dev` writes).
fn start_tls_from(dir: &std::path::Path) -> std::io::Result<cairn_server::ServerHandle> {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    cairn_server::start(cairn_server::Config {
        port: 0,
        tls_port: Some(0),
        tls_cert_file: path("node.crt"),
        tls_key_file: path("node.key"),
        tls_ca_cert_file: path("ca.crt"),
        ..Default::default()
    })
}
