//! Cluster probes run from the client host (`cairn-lab leader`,
//! `wait-cluster`, `digest`): who leads a key's group in each node's view,
//! whether every group has a leader, and each replica's per-group applied
//! index and state digest.
//!
//! Each probe opens a fresh connection per node (a connection that asked
//! `CLUSTER SHARDS` gets `-MOVED` replies afterwards, so the workload's
//! connections never ask) and gives every node at most `timeout`: a paused
//! or cut-off node is reported as unreachable, never waited for.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

async fn connect(addr: &str, timeout: Duration) -> Result<MultiplexedConnection, String> {
    let client =
        redis::Client::open(format!("redis://{addr}/")).map_err(|e| format!("bad address: {e}"))?;
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    match tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&cfg),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

async fn query(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Result<Value, String> {
    match tokio::time::timeout(timeout, cmd.query_async::<Value>(conn)).await {
        Ok(Ok(Value::ServerError(e))) => Err(format!("{e:?}")),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// Key/value pairs of a RESP3 map or a RESP2 flat array.
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(kv) => kv.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|c| match c {
                [k, v] => Some((text(k)?, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    pairs(v)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// One node's view of a slot's group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupView {
    /// `IP:PORT` of the leader it knows, if any.
    pub leader: Option<String>,
    /// Its own applied index of the group (the `replication-offset` it
    /// reports for itself), when it names itself among the voters.
    pub applied: Option<i64>,
}

/// Asks `addr` who leads the group of `slot` (`CLUSTER SHARDS`).
pub async fn group_view(addr: &str, slot: i64, timeout: Duration) -> Result<GroupView, String> {
    let mut conn = connect(addr, timeout).await?;
    let shards = query(&mut conn, redis::cmd("CLUSTER").arg("SHARDS"), timeout).await?;
    let Value::Array(shards) = shards else {
        return Err(format!("CLUSTER SHARDS answered {shards:?}"));
    };
    for shard in &shards {
        let Some(Value::Array(range)) = field(shard, "slots") else {
            continue;
        };
        let (Some(lo), Some(hi)) = (range.first().and_then(int), range.get(1).and_then(int)) else {
            continue;
        };
        if !(lo..=hi).contains(&slot) {
            continue;
        }
        let mut view = GroupView::default();
        if let Some(Value::Array(nodes)) = field(shard, "nodes") {
            for n in nodes {
                let ip = field(n, "ip").and_then(text).unwrap_or_default();
                let port = field(n, "port").and_then(int).unwrap_or(0);
                let at = format!("{ip}:{port}");
                if field(n, "role").and_then(text).as_deref() == Some("master") {
                    view.leader = Some(at.clone());
                }
                if at == addr {
                    view.applied = field(n, "replication-offset").and_then(int);
                }
            }
        }
        return Ok(view);
    }
    Err(format!("no shard holds slot {slot}"))
}

/// The Redis Cluster hash slot of `key` (CRC16-XMODEM of its hash tag,
/// mod 16384), as `CLUSTER KEYSLOT` computes it; local, so a paused node
/// cannot delay the probe.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Every target's view of the leader of `key`'s group, and the leader
/// most of them name (ties: the first such target's answer).
#[derive(Clone, Debug, Default)]
pub struct LeaderReport {
    /// The key's slot.
    pub slot: i64,
    /// Per target: its view, or why it did not answer.
    pub views: BTreeMap<String, Result<GroupView, String>>,
    /// The leader named by most targets.
    pub leader: Option<String>,
}

/// Asks every target (concurrently, `timeout` each) who leads `key`'s group.
pub async fn leader(targets: &[String], key: &str, timeout: Duration) -> LeaderReport {
    let slot = i64::from(key_slot(key.as_bytes()));
    let mut set = tokio::task::JoinSet::new();
    for t in targets {
        let t = t.clone();
        set.spawn(async move {
            let v = group_view(&t, slot, timeout).await;
            (t, v)
        });
    }
    let mut views = BTreeMap::new();
    while let Some(r) = set.join_next().await {
        if let Ok((t, v)) = r {
            views.insert(t, v);
        }
    }
    let mut votes: Vec<(String, usize)> = Vec::new();
    for t in targets {
        if let Some(Ok(GroupView {
            leader: Some(l), ..
        })) = views.get(t)
        {
            match votes.iter_mut().find(|(x, _)| x == l) {
                Some((_, n)) => *n += 1,
                None => votes.push((l.clone(), 1)),
            }
        }
    }
    // Most votes; among equals, the first named (stable).
    let best = votes.iter().map(|(_, n)| *n).max();
    let leader = votes
        .into_iter()
        .find(|(_, n)| Some(*n) == best)
        .map(|(l, _)| l);
    LeaderReport {
        slot,
        views,
        leader,
    }
}

/// Waits until every target answers `CLUSTER INFO` with
/// `cluster_state:ok` (each node knows a leader for every group), for at
/// most `limit`. Returns how long it took.
pub async fn wait_cluster(targets: &[String], limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let step = Duration::from_millis(500);
    let mut last = String::from("no attempt");
    while start.elapsed() < limit {
        let mut all = true;
        for t in targets {
            let r = async {
                let mut c = connect(t, step).await?;
                let v = query(&mut c, redis::cmd("CLUSTER").arg("INFO"), step).await?;
                text(&v).ok_or_else(|| format!("CLUSTER INFO answered {v:?}"))
            }
            .await;
            match r {
                Ok(info) if info.contains("cluster_state:ok") => {}
                Ok(info) => {
                    all = false;
                    last = format!(
                        "{t}: {}",
                        info.lines()
                            .filter(|l| l.contains("state") || l.contains("with_leader"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                }
                Err(e) => {
                    all = false;
                    last = format!("{t}: {e}");
                }
            }
            if !all {
                break;
            }
        }
        if all {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("cluster not ready after {limit:?}: {last}"))
}

/// One replica's `CLUSTER DIGEST`: group → (applied index, digest).
pub type Digest = BTreeMap<u16, (u64, String)>;

/// `CLUSTER DIGEST` of one node.
pub async fn digest(addr: &str, timeout: Duration) -> Result<Digest, String> {
    let mut c = connect(addr, timeout).await?;
    let v = query(&mut c, redis::cmd("CLUSTER").arg("DIGEST"), timeout).await?;
    let body = text(&v).ok_or_else(|| format!("CLUSTER DIGEST answered {v:?}"))?;
    let mut out = Digest::new();
    for line in body.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [g, idx, d] = f[..] {
            let (Ok(g), Ok(idx)) = (g.parse(), idx.parse()) else {
                return Err(format!("bad digest line {line:?}"));
            };
            out.insert(g, (idx, d.to_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn key_slots_match_redis_cluster() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"{t}r:k0"), key_slot(b"{t}c:k2"));
    }
}
