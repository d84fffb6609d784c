//! The memory cairn reports for its dataset tracks what the process really
//! allocates (checked against RSS growth of this process, which hosts the
//! server).

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

fn dataset_bytes(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(c).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory_dataset:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory_dataset")
}

fn load(c: &mut redis::Connection, prefix: &str, n: usize, value: &[u8]) {
    for chunk in 0..n / 1000 {
        let mut p = redis::pipe();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            p.set(format!("{prefix}:{i:08}"), value).ignore();
        }
        let _: () = p.query(c).expect("pipeline");
    }
}

fn check(prefix: &str, n: usize, value: &[u8]) {
    let h = cairn_server::start(cairn_server::Config {
        port: 0,
        ..Default::default()
    })
    .expect("start");
    let mut c = redis::Client::open(format!("redis://{}/", h.local_addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    // Warm up allocator and connection buffers before the baseline.
    load(&mut c, "warm", 1000, value);
    let (rss0, ds0) = (rss_bytes(), dataset_bytes(&mut c));
    load(&mut c, prefix, n, value);
    let (rss1, ds1) = (rss_bytes(), dataset_bytes(&mut c));
    let (rss, ds) = ((rss1 - rss0) as f64, (ds1 - ds0) as f64);
    let ratio = rss / ds;
    eprintln!(
        "{n} keys x {} B values: dataset +{ds} B, RSS +{rss} B, ratio {ratio:.2}",
        value.len()
    );
    assert!(
        (0.7..=1.4).contains(&ratio),
        "RSS grew {rss} B while the dataset grew {ds} B (ratio {ratio:.2})"
    );
    h.shutdown();
    h.wait();
}

/// One test, so nothing else in this process allocates meanwhile.
#[test]
fn dataset_accounting_matches_rss_growth() {
    check("small", 300_000, &[b'v'; 16]);
    check("big", 100_000, &[b'v'; 300]);
}
