//! Real Redis client library (`redis` crate) against a real cairn server
//! over TCP, in RESP2 and RESP3.

use std::collections::HashMap;

use redis::{AsyncCommands, Value};

struct Server(Option<cairn_server::ServerHandle>);

impl Server {
    fn start() -> Server {
        Self::with(cairn_server::Config {
            port: 0,
            ..Default::default()
        })
    }

    fn with(config: cairn_server::Config) -> Server {
        Server(Some(cairn_server::start(config).expect("server starts")))
    }

    fn url(&self, resp3: bool) -> String {
        let addr = self.0.as_ref().map(|h| h.local_addr()).expect("running");
        format!(
            "redis://{addr}/{}",
            if resp3 { "?protocol=resp3" } else { "" }
        )
    }

    fn client(&self, resp3: bool) -> redis::Client {
        redis::Client::open(self.url(resp3)).expect("valid url")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.shutdown();
            h.wait();
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn strings_and_counters(client: redis::Client) {
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = c.set("greeting", "hello").await.unwrap();
    let v: String = c.get("greeting").await.unwrap();
    assert_eq!(v, "hello");
    let missing: Option<String> = c.get("nope").await.unwrap();
    assert_eq!(missing, None);
    assert_eq!(c.incr::<_, _, i64>("counter", 5).await.unwrap(), 5);
    assert_eq!(c.decr::<_, _, i64>("counter", 2).await.unwrap(), 3);
    let f: f64 = redis::cmd("INCRBYFLOAT")
        .arg("counter")
        .arg("0.5")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(f, 3.5);
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).await.unwrap();
    let vals: Vec<Option<String>> = c.mget(&["a", "b", "zz"]).await.unwrap();
    assert_eq!(vals, vec![Some("1".into()), Some("2".into()), None]);
    assert_eq!(
        c.append::<_, _, i64>("greeting", " world").await.unwrap(),
        11
    );
    assert_eq!(c.strlen::<_, i64>("greeting").await.unwrap(), 11);
    let sub: String = c.getrange("greeting", 0, 4).await.unwrap();
    assert_eq!(sub, "hello");
    // Binary-safe keys and values.
    let key = vec![0u8, 255, b'\r', b'\n', 7];
    let val = vec![b'\n'; 3];
    let _: () = c.set(&key, &val).await.unwrap();
    let back: Vec<u8> = c.get(&key).await.unwrap();
    assert_eq!(back, val);
    // SET options, IFEQ compare-and-set.
    let nx: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("x")
        .arg("NX")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(nx, None);
    let old: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("9")
        .arg("GET")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(old.as_deref(), Some("1"));
    let cas: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("10")
        .arg("IFEQ")
        .arg("9")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(cas.as_deref(), Some("OK"));
    let cas: Option<String> = redis::cmd("SET")
        .arg("a")
        .arg("11")
        .arg("IFEQ")
        .arg("9")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(cas, None);
    assert_eq!(c.get::<_, String>("a").await.unwrap(), "10");
    // Errors come back as errors, with Redis' wording.
    let err = c.incr::<_, _, i64>("greeting", 1).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("value is not an integer or out of range"),
        "{err}"
    );
}

async fn keys_and_ttl(client: redis::Client) {
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = c.set_ex("temp", "v", 100).await.unwrap();
    let ttl: i64 = c.ttl("temp").await.unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(50)
        .query_async(&mut c)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    assert_eq!(
        c.get::<_, Option<String>>("short").await.unwrap(),
        None,
        "expired key is invisible"
    );
    assert_eq!(c.exists::<_, i64>("short").await.unwrap(), 0);
    assert!(c.persist::<_, bool>("temp").await.unwrap());
    assert_eq!(c.ttl::<_, i64>("temp").await.unwrap(), -1);
    assert_eq!(c.ttl::<_, i64>("missing").await.unwrap(), -2);
    let _: () = c.rename("temp", "temp2").await.unwrap();
    assert_eq!(c.get::<_, String>("temp2").await.unwrap(), "v");
    let t: String = redis::cmd("TYPE")
        .arg("temp2")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(t, "string");
    for i in 0..250 {
        let _: () = c.set(format!("scan:{i}"), i).await.unwrap();
    }
    let mut found: Vec<String> = Vec::new();
    {
        let mut iter: redis::AsyncIter<String> = c.scan_match("scan:*").await.unwrap();
        while let Some(k) = iter.next_item().await {
            found.push(k.unwrap());
        }
    }
    found.sort();
    found.dedup();
    assert_eq!(found.len(), 250);
    let keys: Vec<String> = c.keys("scan:1?").await.unwrap();
    assert_eq!(keys.len(), 10);
    assert_eq!(
        c.del::<_, i64>(&["scan:1", "scan:2", "nope"])
            .await
            .unwrap(),
        2
    );
}

async fn pipelines_and_concurrency(client: redis::Client) {
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.set(format!("p:{i}"), i).ignore();
    }
    pipe.get("p:999");
    let (last,): (i64,) = pipe.query_async(&mut c).await.unwrap();
    assert_eq!(last, 999);
    // 8 connections x 500 increments of the same counter: none lost.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            for _ in 0..500 {
                let _: i64 = c.incr("shared", 1).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.get::<_, i64>("shared").await.unwrap(), 4000);
    // MSET is atomic across shards: a reader never sees half of it.
    let _: () = c
        .mset(&[("{x}1", "a"), ("y2", "a"), ("z3", "a")])
        .await
        .unwrap();
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect");
            for i in 0..300 {
                let v = if i % 2 == 0 { "b" } else { "a" };
                let _: () = c.mset(&[("{x}1", v), ("y2", v), ("z3", v)]).await.unwrap();
            }
        })
    };
    for _ in 0..300 {
        let vals: Vec<String> = c.mget(&["{x}1", "y2", "z3"]).await.unwrap();
        assert!(
            vals.iter().all(|v| *v == vals[0]),
            "torn MSET seen: {vals:?}"
        );
    }
    writer.await.unwrap();
}

#[test]
fn resp2_client_strings_counters_and_errors() {
    let s = Server::start();
    rt().block_on(strings_and_counters(s.client(false)));
}

#[test]
fn resp3_client_strings_counters_and_errors() {
    let s = Server::start();
    rt().block_on(strings_and_counters(s.client(true)));
}

#[test]
fn resp2_client_keys_ttl_scan() {
    let s = Server::start();
    rt().block_on(keys_and_ttl(s.client(false)));
}

#[test]
fn resp3_client_keys_ttl_scan() {
    let s = Server::start();
    rt().block_on(keys_and_ttl(s.client(true)));
}

#[test]
fn pipelining_and_concurrent_clients_lose_nothing() {
    let s = Server::start();
    rt().block_on(pipelines_and_concurrency(s.client(false)));
}

#[test]
fn resp3_hello_returns_a_map_and_nulls_are_native() {
    let s = Server::start();
    let mut c = s.client(false).get_connection().expect("connect");
    let v: Value = redis::cmd("HELLO").arg(3).query(&mut c).unwrap();
    let Value::Map(pairs) = v else {
        panic!("HELLO 3 must reply with a map, got {v:?}")
    };
    let m: HashMap<String, Value> = pairs
        .into_iter()
        .map(|(k, v)| (redis::from_redis_value::<String>(k).unwrap(), v))
        .collect();
    assert_eq!(m.get("proto"), Some(&Value::Int(3)));
    let v: Value = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    assert!(info.contains("redis_version:"), "{info}");
    let v: Value = redis::cmd("HELLO")
        .arg(4)
        .query(&mut c)
        .unwrap_or(Value::Nil);
    assert_eq!(v, Value::Nil, "unsupported protocol is an error");
}

#[test]
fn sync_client_connection_commands() {
    let s = Server::start();
    let mut c = s.client(false).get_connection().expect("connect");
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("ECHO").arg("hi").query(&mut c).unwrap();
    assert_eq!(echo, "hi");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "tester");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(
        list.contains("name=tester") && list.contains("cmd=client"),
        "{list}"
    );
    let n: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(n > 50);
    let e = redis::cmd("SELECT").arg(1).query::<()>(&mut c).unwrap_err();
    assert!(e.to_string().contains("DB index is out of range"), "{e}");
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let t: Vec<String> = redis::cmd("TIME").query(&mut c).unwrap();
    assert_eq!(t.len(), 2);
    let cfg: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory*")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        cfg.get("maxmemory-policy").map(String::as_str),
        Some("noeviction")
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("10mb")
        .query(&mut c)
        .unwrap();
    let cfg: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut c)
        .unwrap();
    assert_eq!(cfg.get("maxmemory").map(String::as_str), Some("10485760"));
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("port")
        .arg("1")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("can't set immutable config"), "{e}");
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn noeviction_answers_oom_and_lru_evicts_instead() {
    let s = Server::with(cairn_server::Config {
        port: 0,
        maxmemory: 2 << 20,
        ..Default::default()
    });
    let mut c = s.client(false).get_connection().expect("connect");
    let big = vec![b'x'; 10_000];
    let mut oom = None;
    for i in 0..1000 {
        if let Err(e) = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&big)
            .query::<()>(&mut c)
        {
            oom = Some(e.to_string());
            break;
        }
    }
    let oom = oom.expect("writes past maxmemory fail under noeviction");
    assert!(
        oom.contains("OOM") && oom.contains("command not allowed when used memory > 'maxmemory'"),
        "{oom}"
    );
    // Reads still work; deletes (not denyoom) still work.
    let _: Vec<u8> = redis::cmd("GET").arg("k0").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(&mut c)
        .unwrap();
    for i in 1000..2000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&big)
            .query(&mut c)
            .unwrap();
    }
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_dataset:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory_dataset in INFO");
    // As in Redis, eviction runs before each write, so the dataset may
    // exceed the limit by at most the last value written.
    assert!(used <= (2 << 20) + 12_000, "dataset {used} over maxmemory");
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(!stats.contains("evicted_keys:0\r"), "{stats}");
}

#[test]
fn active_expiry_removes_keys_nobody_reads() {
    let s = Server::start();
    let mut c = s.client(false).get_connection().expect("connect");
    let mut p = redis::pipe();
    for i in 0..2000 {
        p.cmd("SET")
            .arg(format!("gone:{i}"))
            .arg("v")
            .arg("PX")
            .arg(100)
            .ignore();
    }
    p.cmd("SET").arg("stays").arg("v").ignore();
    let _: () = p.query(&mut c).unwrap();
    // DBSIZE counts keys not yet removed; only the background cycle can
    // bring it down, since nothing reads the expired keys.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        if n == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "active expiry left {n} keys"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(stats.contains("expired_keys:2000"), "{stats}");
}

#[test]
fn slowlog_records_commands_over_the_threshold() {
    let s = Server::start();
    let mut c = s.client(false).get_connection().expect("connect");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("slow")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    assert!(n >= 2, "{n}");
    let entries: Vec<Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(entries.len(), 1);
    let text = format!("{entries:?}");
    assert!(text.contains("slow") || text.contains("SLOWLOG"), "{text}");
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(&mut c).unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(-1)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("fast")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("SLOWLOG").arg("LEN").query(&mut c).unwrap();
    assert_eq!(
        n, 1,
        "only the CONFIG SET that disabled logging may be recorded"
    );
    let latest: Vec<Value> = redis::cmd("LATENCY").arg("LATEST").query(&mut c).unwrap();
    assert!(latest.is_empty(), "latency monitor is off by default");
}

#[test]
fn client_kill_by_id_closes_that_connection_only() {
    let s = Server::start();
    let mut a = s.client(false).get_connection().expect("connect");
    let mut b = s.client(false).get_connection().expect("connect");
    let b_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut b).unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(b_id)
        .query(&mut a)
        .unwrap();
    assert_eq!(killed, 1);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = redis::cmd("PING").query::<String>(&mut b);
    assert!(r.is_err(), "killed connection still answered: {r:?}");
    let pong: String = redis::cmd("PING").query(&mut a).unwrap();
    assert_eq!(pong, "PONG");
    let e = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("127.0.0.1:1")
        .query::<()>(&mut a)
        .unwrap_err();
    assert!(e.to_string().contains("No such client"), "{e}");
}

#[test]
fn object_reports_encoding_idle_time_and_lfu_frequency() {
    let s = Server::start();
    let mut c = s.client(false).get_connection().expect("connect");
    let _: () = redis::cmd("SET")
        .arg("n")
        .arg("12345")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("long")
        .arg("x".repeat(100))
        .query(&mut c)
        .unwrap();
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("n")
        .query(&mut c)
        .unwrap();
    assert_eq!(enc, "int");
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg("long")
        .query(&mut c)
        .unwrap();
    assert_eq!(enc, "raw");
    let idle: i64 = redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg("n")
        .query(&mut c)
        .unwrap();
    assert!((0..=1).contains(&idle));
    let e = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("n")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("An LFU maxmemory policy is not selected"),
        "{e}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lfu")
        .query(&mut c)
        .unwrap();
    for _ in 0..50 {
        let _: String = redis::cmd("GET").arg("n").query(&mut c).unwrap();
    }
    let freq: i64 = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("n")
        .query(&mut c)
        .unwrap();
    assert!(freq >= 1, "{freq}");
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("long")
        .query(&mut c)
        .unwrap();
    assert!(usage >= 100, "{usage}");
    let missing: Option<i64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(missing, None);
}
