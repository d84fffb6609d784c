//! The `cairn` binary as an operator runs it: flags, config errors, and
//! graceful shutdown on signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

/// Starts `cairn server --port 0 --log info ...` and reads its log until
/// `port_of` finds the RESP port in a line; returns the child, the lines
/// read (that one included) and the port, and keeps draining the log so
/// the child never blocks on a full pipe.
fn start_until(extra: &[&str], port_of: impl Fn(&str) -> Option<u16>) -> (Child, Vec<String>, u16) {
    let mut child = cairn()
        .args(["server", "--port", "0", "--log", "info"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push(line.clone());
        if let Some(port) = port_of(&line) {
            std::thread::spawn(move || for _ in lines.by_ref() {});
            return (child, seen, port);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cairn did not log its address: {seen:?}");
}

/// Starts `cairn server --port 0 ...` and returns it with the port it
/// logged.
fn start(extra: &[&str]) -> (Child, u16) {
    let (child, _, port) = start_until(extra, |line| {
        let rest = line.split("addr=127.0.0.1:").nth(1)?;
        let port = rest
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in log");
        Some(port)
    });
    (child, port)
}

fn roundtrip(port: u16, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(req).expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    buf.truncate(n);
    buf
}

fn signal_and_wait(child: &mut Child, sig: i32) -> std::process::ExitStatus {
    // SAFETY: kill(2) on a child we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "cairn did not exit after signal {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serves_then_stops_cleanly_on_sigterm_and_sigint() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let (mut child, port) = start(&[]);
        assert_eq!(
            roundtrip(port, b"SET k v\r\nGET k\r\n"),
            b"+OK\r\n$1\r\nv\r\n"
        );
        // An idle open connection must not hold the shutdown up.
        let idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let status = signal_and_wait(&mut child, sig);
        assert!(
            status.success(),
            "exit status {status:?} after signal {sig}"
        );
        drop(idle);
    }
}

#[test]
fn shutdown_command_stops_the_process() {
    let (mut child, port) = start(&[]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"SHUTDOWN\r\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "SHUTDOWN did not stop cairn");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn flags_and_config_file_are_applied() {
    let dir = std::env::temp_dir().join(format!("cairn-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("cairn.toml");
    std::fs::write(
        &file,
        "maxmemory = \"2mb\"\nmaxmemory_policy = \"allkeys-lru\"\n",
    )
    .expect("write config");
    let path = file.to_string_lossy().into_owned();
    // The flag overrides the file's policy.
    let (mut child, port) = start(&["--config", &path, "--maxmemory-policy", "allkeys-lfu"]);
    let reply = roundtrip(port, b"CONFIG GET maxmemory*\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("2097152"), "{text}");
    assert!(text.contains("allkeys-lfu"), "{text}");
    assert!(signal_and_wait(&mut child, libc::SIGTERM).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("cairn-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "maxmemroy = 5\n").expect("write config");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), file.to_string_lossy().into_owned()],
            "maxmemroy",
        ),
        (
            vec!["--maxmemory".into(), "lots".into()],
            "invalid memory size 'lots'",
        ),
        (
            vec!["--maxmemory-policy".into(), "lru".into()],
            "unknown policy 'lru'",
        ),
        (vec!["--shards".into(), "3".into()], "power of two"),
        (vec!["--bind".into(), "nowhere".into()], "not an IP address"),
        (
            vec!["--config".into(), "/nonexistent/cairn.toml".into()],
            "reading /nonexistent/cairn.toml",
        ),
    ];
    for (args, expected) in cases {
        let out = cairn()
            .arg("server")
            .args(&args)
            .output()
            .expect("run cairn");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected '{expected}' in: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn port_in_use_is_reported() {
    let (mut child, port) = start(&[]);
    let out = cairn()
        .args(["server", "--port", &port.to_string()])
        .output()
        .expect("run cairn");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("address already in use"),
        "{stderr}"
    );
    assert!(signal_and_wait(&mut child, libc::SIGTERM).success());
}

/// `cairn server --audit-log`, then `cairn audit verify` (exit 0, then 1
/// once a record is edited) and `cairn audit tail -n`.
#[test]
fn audit_log_verify_and_tail_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let log_s = log.to_string_lossy().into_owned();
    let (mut child, port) = start(&["--audit-log", &log_s, "--requirepass", "pw-0123"]);
    for req in [
        &b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n"[..],
        b"*2\r\n$4\r\nAUTH\r\n$7\r\npw-0123\r\n",
        b"*2\r\n$8\r\nFLUSHALL\r\n$4\r\nSYNC\r\n",
    ] {
        roundtrip(port, req);
    }
    assert!(signal_and_wait(&mut child, libc::SIGTERM).success());
    let out = cairn().args(["audit", "verify", &log_s]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: records 1..3,"),
        "{out:?}"
    );
    let out = cairn()
        .args(["audit", "tail", "-n", "2", &log_s])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains("\"outcome\":\"ok\"") && text.contains("flushall"),
        "{text}"
    );
    assert!(!text.contains("pw-0123"), "{text}");
    let edited = std::fs::read_to_string(&log)
        .unwrap()
        .replacen("wrong", "right", 1);
    let edited = edited.replacen("\"failed\"", "\"ok\"", 1);
    std::fs::write(&log, edited).unwrap();
    let out = cairn().args(["audit", "verify", &log_s]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1: hash mismatch"),
        "{out:?}"
    );
}

/// Starts `cairn server --port 0 --log info ...`, and returns it with the
/// log lines up to and including "cairn ready" and the RESP port that line
/// names (whatever address it is bound to).
fn start_with_log(extra: &[&str]) -> (Child, Vec<String>, u16) {
    start_until(extra, |line| {
        if !line.contains("cairn ready to accept connections") {
            return None;
        }
        let port = line
            .split(" addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("port in the ready line");
        Some(port)
    })
}

/// Secure defaults: a node bound off loopback (0.0.0.0; the test only
/// ever connects through 127.0.0.1) warns on stderr when it has no TLS,
/// or when the default user needs no password, and says which; with both
/// a password and TLS it does not warn. A loopback node never warns.
#[test]
fn a_node_off_loopback_without_tls_or_password_warns_and_says_which() {
    let certs = tempfile::tempdir().unwrap();
    let out = cairn()
        .args(["cert", "dev", "--dir"])
        .arg(certs.path())
        .output()
        .expect("cairn cert dev");
    assert!(out.status.success(), "{out:?}");
    let f = |n: &str| certs.path().join(n).to_string_lossy().into_owned();
    let tls: Vec<String> = vec![
        "--tls-port".into(),
        "0".into(),
        "--tls-cert-file".into(),
        f("node.crt"),
        "--tls-key-file".into(),
        f("node.key"),
        "--tls-ca-cert-file".into(),
        f("ca.crt"),
    ];
    let pass: Vec<String> = vec!["--requirepass".into(), "pw-0123456789".into()];
    let any: Vec<String> = vec!["--bind".into(), "0.0.0.0".into()];
    let cases: Vec<(Vec<String>, Option<&str>)> = vec![
        (any.clone(), Some("without TLS and without a password")),
        (
            [any.clone(), pass.clone()].concat(),
            Some("address without TLS:"),
        ),
        (
            [any.clone(), tls.clone()].concat(),
            Some("address without a password:"),
        ),
        ([any.clone(), tls.clone(), pass.clone()].concat(), None),
        // Loopback (the default bind): no warning even with neither.
        (Vec::new(), None),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut child, log, port) = start_with_log(&args);
        let warnings: Vec<&String> = log.iter().filter(|l| l.contains("non-loopback")).collect();
        match want {
            Some(which) => {
                assert_eq!(warnings.len(), 1, "{args:?}: {log:#?}");
                assert!(warnings[0].contains("WARN"), "{args:?}: {warnings:?}");
                assert!(
                    warnings[0].contains("SECURITY WARNING") && warnings[0].contains(which),
                    "{args:?}: expected '{which}' in {warnings:?}"
                );
            }
            None => assert!(warnings.is_empty(), "{args:?} warned: {warnings:?}"),
        }
        // It serves (through loopback) either way.
        let reply = roundtrip(port, b"PING\r\n");
        let want_reply: &[u8] = if args.contains(&"--requirepass") {
            b"-NOAUTH Authentication required.\r\n"
        } else {
            b"+PONG\r\n"
        };
        assert_eq!(reply, want_reply, "{args:?}");
        assert!(signal_and_wait(&mut child, libc::SIGTERM).success());
    }
}

/// `cairn cert dev` as an operator runs it: it prints the six files it
/// wrote, the keys are private to the owner, the node certificate names
/// every `--host` beside localhost/127.0.0.1 and chains to the CA (as
/// openssl sees it), and a server started with the files serves
/// `redis-cli --tls` presenting the client certificate. A --dir that
/// cannot be a directory is refused with its name.
#[test]
fn cert_dev_writes_a_ca_node_and_client_certificate_a_tls_server_can_use() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let out = cairn()
        .args(["cert", "dev", "--dir"])
        .arg(&dir)
        .args(["--host", "10.9.8.7", "--host", "node-a.example"])
        .output()
        .expect("cairn cert dev");
    assert!(out.status.success(), "{out:?}");
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let mut names: Vec<String> = printed
        .iter()
        .map(|p| {
            let p = std::path::Path::new(p);
            assert!(p.is_file(), "{} was printed but not written", p.display());
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca.crt",
            "ca.key",
            "client.crt",
            "client.key",
            "node.crt",
            "node.key"
        ]
    );
    for key in ["ca.key", "node.key", "client.key"] {
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
    }
    let f = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let sans = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &f("node.crt"),
        ])
        .output()
        .expect("openssl");
    let sans = String::from_utf8_lossy(&sans.stdout);
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:10.9.8.7",
        "DNS:node-a.example",
    ] {
        assert!(sans.contains(want), "{want} not in {sans}");
    }
    let verify = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &f("ca.crt"),
            &f("node.crt"),
            &f("client.crt"),
        ])
        .output()
        .expect("openssl");
    assert!(verify.status.success(), "{verify:?}");

    let (mut child, log, _) = start_with_log(&[
        "--tls-port",
        "0",
        "--tls-cert-file",
        &f("node.crt"),
        "--tls-key-file",
        &f("node.key"),
        "--tls-ca-cert-file",
        &f("ca.crt"),
    ]);
    let tls_port: u16 = log
        .iter()
        .find(|l| l.contains("TLS port ready"))
        .and_then(|l| l.split(" addr=127.0.0.1:").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no TLS port in {log:#?}"));
    let cli = |extra: &[&str], args: &[&str]| {
        Command::new("redis-cli")
            .args([
                "-p",
                &tls_port.to_string(),
                "--tls",
                "--cacert",
                &f("ca.crt"),
            ])
            .args(extra)
            .args(args)
            .output()
            .expect("redis-cli")
    };
    let with_cert = ["--cert", &f("client.crt"), "--key", &f("client.key")];
    let out = cli(&with_cert, &["SET", "k", "over-tls"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK", "{out:?}");
    let out = cli(&with_cert, &["GET", "k"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over-tls",
        "{out:?}"
    );
    // tls-auth-clients yes (the default): no client certificate, no entry.
    let out = cli(&[], &["GET", "k"]);
    assert_ne!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over-tls",
        "{out:?}"
    );
    assert!(signal_and_wait(&mut child, libc::SIGTERM).success());

    // A --dir that is a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = cairn()
        .args(["cert", "dev", "--dir"])
        .arg(&file)
        .output()
        .expect("cairn cert dev");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&*file.to_string_lossy()),
        "{out:?}"
    );
}
