//! The memory cairn reports for its dataset tracks what the process really
//! allocates: checked against jemalloc's own count of allocated bytes
//! (tightly) and the RSS growth (loosely) of this process, which hosts the
//! server, under jemalloc, the `cairn` binary's allocator, whose size
//! classes the accounting models.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

/// Bytes jemalloc has handed out and not had back (size classes, so
/// what the accounting models).
fn allocated_bytes() -> u64 {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("stats.allocated") as u64
}

fn dataset_bytes(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(c).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory_dataset:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory_dataset")
}

/// What one test loads: `n` keys of a shape.
#[derive(Clone, Copy)]
enum Shape<'a> {
    /// A string value.
    Str(&'a [u8]),
    /// A set of this many members like `member:000123` (a listpack up to
    /// 128, a hashtable above).
    Set(usize),
    /// A set of this many small integers (an intset up to 512).
    Ints(usize),
    /// A list of this many elements like `element:000123` (chunks of up
    /// to 8 KiB).
    List(usize),
    /// A sorted set of this many members like `member:000123` with
    /// repeating scores (a listpack up to 128, a skiplist above).
    ZSet(usize),
    /// A hash of this many fields like `field:000123` with values like
    /// `value:123` (a listpack up to 128, a hashtable above).
    Hash(usize),
}

fn load(c: &mut redis::Connection, prefix: &str, n: usize, shape: Shape<'_>) {
    let per_key = match shape {
        Shape::Str(_) => 1,
        Shape::Set(m) | Shape::Ints(m) | Shape::List(m) | Shape::ZSet(m) | Shape::Hash(m) => m,
    };
    let keys_per_batch = (1000 / per_key).max(1);
    for chunk in 0..n.div_ceil(keys_per_batch) {
        let mut p = redis::pipe();
        for i in chunk * keys_per_batch..((chunk + 1) * keys_per_batch).min(n) {
            let key = format!("{prefix}:{i:08}");
            match shape {
                Shape::Str(value) => {
                    p.set(key, value).ignore();
                }
                Shape::Set(m) => {
                    let members: Vec<String> = (0..m).map(|j| format!("member:{j:06}")).collect();
                    p.sadd(key, members).ignore();
                }
                Shape::Ints(m) => {
                    p.sadd(key, (0..m as i64).collect::<Vec<_>>()).ignore();
                }
                Shape::List(m) => {
                    // At most 1000 elements a command (a long list grows
                    // over many pushes, not one huge request).
                    for from in (0..m).step_by(1000) {
                        let elements: Vec<String> = (from..(from + 1000).min(m))
                            .map(|j| format!("element:{j:06}"))
                            .collect();
                        p.rpush(&key, elements).ignore();
                    }
                }
                Shape::ZSet(m) => {
                    let items: Vec<(i64, String)> = (0..m)
                        .map(|j| ((j % 100) as i64, format!("member:{j:06}")))
                        .collect();
                    p.zadd_multiple(key, &items).ignore();
                }
                Shape::Hash(m) => {
                    let items: Vec<(String, String)> = (0..m)
                        .map(|j| (format!("field:{j:06}"), format!("value:{j}")))
                        .collect();
                    p.hset_multiple(key, &items).ignore();
                }
            }
        }
        let _: () = p.query(c).expect("pipeline");
    }
}

/// Loads `n` keys of `shape` into a fresh server and compares the RSS
/// growth with the dataset's. The server is returned, still running: what
/// it holds must not be freed and reused by the next check (RSS would
/// not grow then).
fn check(prefix: &str, n: usize, shape: Shape<'_>) -> cairn_server::ServerHandle {
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
    load(&mut c, "warm", 1000, Shape::Str(&[b'w'; 16]));
    let (rss0, al0, ds0) = (rss_bytes(), allocated_bytes(), dataset_bytes(&mut c));
    load(&mut c, prefix, n, shape);
    let (rss1, al1, ds1) = (rss_bytes(), allocated_bytes(), dataset_bytes(&mut c));
    let ds = (ds1 - ds0) as f64;
    let (rss, al) = (rss1 as f64 - rss0 as f64, al1 as f64 - al0 as f64);
    let (rss_ratio, al_ratio) = (rss / ds, al / ds);
    eprintln!(
        "{prefix}: {n} keys: dataset +{ds} B, allocated +{al} B ({al_ratio:.3}), \
         RSS +{rss} B ({rss_ratio:.2})"
    );
    assert!(
        (0.85..=1.15).contains(&al_ratio),
        "jemalloc allocated {al} B while the dataset grew {ds} B (ratio {al_ratio:.3})"
    );
    // RSS also moves with pages the allocator reuses or keeps after a
    // free (jemalloc returns them after a decay delay): a loose bound.
    assert!(
        (0.6..=1.4).contains(&rss_ratio),
        "RSS grew {rss} B while the dataset grew {ds} B (ratio {rss_ratio:.2})"
    );
    h
}

/// One test, so nothing else in this process allocates meanwhile.
#[test]
fn dataset_accounting_matches_rss_growth() {
    let servers = [
        check("small", 300_000, Shape::Str(&[b'v'; 16])),
        check("big", 100_000, Shape::Str(&[b'v'; 300])),
        check("listpack-sets", 20_000, Shape::Set(20)),
        check("table-sets", 100, Shape::Set(2_000)),
        check("intsets", 20_000, Shape::Ints(100)),
        check("lists", 20_000, Shape::List(16)),
        check("quicklists", 20, Shape::List(50_000)),
        check("listpack-zsets", 20_000, Shape::ZSet(20)),
        check("skiplist-zsets", 100, Shape::ZSet(2_000)),
        check("listpack-hashes", 20_000, Shape::Hash(16)),
        check("table-hashes", 100, Shape::Hash(2_000)),
    ];
    for h in servers {
        h.shutdown();
        h.wait();
    }
}
