//! The cluster-aware client: routes each request, retries what may be
//! retried, and keeps its map of the cluster fresh.
//!
//! The one thing not to get wrong: a non-idempotent write is sent again
//! only when the previous attempt provably applied nothing. Everything
//! else ends in [`Error::OutcomeUnknown`] unless the command opted in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::Frame;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::cmd::{Cmd, ReadFrom, ToArg};
use crate::config::ClientConfig;
use crate::conn::{ConnError, ConnLimits};
use crate::error::{Error, Result};
use crate::node::{encoded, Mode, Node};
use crate::retry::{classify, Verdict};
use crate::slot::slot;
use crate::strategy::{choose, Candidate, LoadSignal};
use crate::topology::Topology;
use crate::value::FromReply;

/// Counters of what the client did, for tests and dashboards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests started.
    pub requests: u64,
    /// Attempts after the first (for any reason but a redirect).
    pub retries: u64,
    /// `-MOVED` replies followed.
    pub redirects: u64,
    /// Topology refreshes completed.
    pub refreshes: u64,
    /// Requests that ended in [`Error::OutcomeUnknown`].
    pub outcome_unknown: u64,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    retries: AtomicU64,
    redirects: AtomicU64,
    refreshes: AtomicU64,
    outcome_unknown: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Inner {
    pub(crate) cfg: ClientConfig,
    pub(crate) limits: ConnLimits,
    topo: RwLock<Arc<Topology>>,
    nodes: RwLock<HashMap<Arc<str>, Arc<Node>>>,
    refresh: Notify,
    epoch: Instant,
    stats: Stats,
    /// Dropped with the last client handle; the refresh task then ends.
    _alive: watch::Sender<()>,
}

/// A cairn client: cheap to clone (clones share connections and the
/// topology), safe to use from many tasks at once.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.inner.topo().nodes())
            .finish_non_exhaustive()
    }
}

fn read<T: ?Sized>(l: &RwLock<Arc<T>>) -> Arc<T> {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Inner {
    pub(crate) fn topo(&self) -> Arc<Topology> {
        read(&self.topo)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn node(&self, addr: &str) -> Arc<Node> {
        if let Some(n) = self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
        {
            return n.clone();
        }
        let mut map = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        map.entry(addr.into())
            .or_insert_with(|| {
                Arc::new(Node::new(
                    addr.into(),
                    self.cfg.pool_size,
                    self.cfg.breaker_policy(),
                    self.epoch,
                ))
            })
            .clone()
    }

    /// The strategy's choice among `addrs` whose breaker is closed.
    fn pick_among(&self, addrs: &[Arc<str>]) -> Option<Arc<Node>> {
        let now = self.now_ms();
        let nodes: Vec<Arc<Node>> = addrs
            .iter()
            .map(|a| self.node(a))
            .filter(|n| n.breaker.allows(now))
            .collect();
        if nodes.is_empty() {
            return None;
        }
        let cands: Vec<Candidate> = nodes
            .iter()
            .map(|n| {
                let c = Candidate::new(&n.addr, n.outstanding());
                match n.server_load() {
                    Some(l) => c.with_server_load(l),
                    None => c,
                }
            })
            .collect();
        Some(nodes[choose(&*self.cfg.strategy, &cands)].clone())
    }

    /// Every node this client knows of: the topology's and the seeds.
    fn known_addrs(&self) -> Vec<Arc<str>> {
        let mut all = self.topo().nodes();
        for s in &self.cfg.seeds {
            if !all.iter().any(|a| &**a == s) {
                all.push(s.as_str().into());
            }
        }
        all
    }

    /// Where `cmd` goes now, and on which kind of connection.
    pub(crate) fn target(&self, cmd: &Cmd) -> Option<(Arc<Node>, Mode)> {
        let topo = self.topo();
        let read_from = cmd.read_from_or(self.cfg.read_from);
        let route = cmd.key().and_then(|k| topo.route(slot(k)));
        let Some(group) = route else {
            return self
                .pick_among(&self.known_addrs())
                .map(|n| (n, Mode::ReadWrite));
        };
        let leader = self.node(group.nodes.first()?);
        match read_from {
            ReadFrom::AnyReplica => {
                let n = self.pick_among(&group.nodes).unwrap_or(leader);
                Some((n, Mode::ReadOnly))
            }
            _ if leader.breaker.allows(self.now_ms()) => Some((leader, Mode::ReadWrite)),
            // The leader is failing: another replica of the group names
            // the new leader (-MOVED) or serves the request once it leads.
            _ => {
                let n = self.pick_among(&group.nodes[1..]).unwrap_or(leader);
                Some((n, Mode::ReadWrite))
            }
        }
    }

    /// A failed call may mean the topology moved: ask for a refresh
    /// (coalesced and rate-limited by the refresh task). The node's
    /// breaker has already counted it.
    fn observe(&self, r: &std::result::Result<Frame, ConnError>) {
        if r.is_err() {
            self.refresh.notify_one();
        }
    }

    pub(crate) fn apply_moved(&self, slot: u16, addr: &str) {
        let mut t = self.topo.write().unwrap_or_else(|e| e.into_inner());
        if t.leader(slot).map(|a| &**a) != Some(addr) {
            *t = Arc::new(t.with_moved(slot, addr));
        }
        drop(t);
        bump(&self.stats.redirects);
        self.refresh.notify_one();
    }

    /// Runs `cmd` until it succeeds, fails for good, or `deadline`.
    pub(crate) async fn execute(
        &self,
        cmd: &Cmd,
        bytes: Bytes,
        deadline: Instant,
    ) -> Result<Frame> {
        bump(&self.stats.requests);
        let policy = &self.cfg.retry;
        let (mut attempts, mut redirects, mut retries) = (0u32, 0u32, 0u32);
        let mut last = String::from("no attempt made");
        loop {
            if attempts >= policy.attempts() || Instant::now() >= deadline {
                return Err(Error::Unavailable { attempts, last });
            }
            attempts += 1;
            let verdict = match self.target(cmd) {
                None => {
                    self.refresh.notify_one();
                    Verdict::Retry("no node known for the request".into())
                }
                Some((node, mode)) => {
                    let d = deadline.min(Instant::now() + self.cfg.attempt_timeout);
                    let r = node.call(bytes.clone(), mode, &self.limits, d).await;
                    self.observe(&r);
                    match classify(r) {
                        Verdict::Unknown(why) => Verdict::Unknown(format!("{}: {why}", node.addr)),
                        Verdict::Retry(why) => Verdict::Retry(format!("{}: {why}", node.addr)),
                        v => v,
                    }
                }
            };
            match verdict {
                Verdict::Done(f) => return Ok(f),
                Verdict::Refused(e) => return Err(Error::Server(e)),
                Verdict::Moved { slot, addr } => {
                    self.apply_moved(slot, &addr);
                    // A redirect to a node the breaker has turned away (a
                    // replica that has not yet seen the new leader) is a
                    // failed attempt: back off while the group elects.
                    if !self.node(&addr).breaker.allows(self.now_ms()) {
                        last = format!("redirected to {addr}, which is failing");
                    } else if redirects < policy.redirects() {
                        redirects += 1;
                        attempts -= 1;
                        continue;
                    } else {
                        // Redirected in circles: the nodes disagree about
                        // the leader. Wait for them to settle.
                        last = format!("more than {} redirects", policy.redirects());
                    }
                }
                Verdict::Retry(why) => last = why,
                Verdict::Unknown(why) if cmd.may_retry_unknown() => last = why,
                Verdict::Unknown(reason) => {
                    bump(&self.stats.outcome_unknown);
                    return Err(Error::OutcomeUnknown { reason });
                }
            }
            bump(&self.stats.retries);
            let pause = policy.backoff_for(retries);
            retries += 1;
            tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
        }
    }

    /// Asks up to three known nodes for `CLUSTER SLOTS` and installs the
    /// first answer.
    pub(crate) async fn refresh_now(&self) -> std::result::Result<(), String> {
        let mut addrs = self.known_addrs();
        let mut why = String::from("no node to ask");
        for _ in 0..3 {
            let Some(node) = self
                .pick_among(&addrs)
                .or_else(|| addrs.first().map(|a| self.node(a)))
            else {
                break;
            };
            addrs.retain(|a| *a != node.addr);
            let d = Instant::now() + self.cfg.attempt_timeout;
            let r = node
                .call(
                    encoded(&[b"CLUSTER", b"SLOTS"]),
                    Mode::ReadWrite,
                    &self.limits,
                    d,
                )
                .await;
            self.observe(&r);
            let topo = match r {
                Ok(Frame::Error(e)) if e.ends_with(b"cluster support disabled") => {
                    Ok(Topology::standalone(node.addr.clone()))
                }
                Ok(f) => Topology::from_cluster_slots(&f, &node.addr),
                Err(ConnError::NotSent(e) | ConnError::MaybeSent(e)) => Err(e),
            };
            match topo {
                Ok(t) => {
                    self.install(t);
                    return Ok(());
                }
                Err(e) => why = format!("{}: {e}", node.addr),
            }
        }
        Err(why)
    }

    fn install(&self, t: Topology) {
        let keep = t.nodes();
        *self.topo.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
        // Forget nodes that left (their pools close once unused); seeds stay.
        let mut map = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|a, _| keep.contains(a) || self.cfg.seeds.iter().any(|s| **s == **a));
        drop(map);
        bump(&self.stats.refreshes);
    }

    /// Pings every known node; failures feed the breakers.
    async fn health_check(self: &Arc<Self>) {
        let mut set = tokio::task::JoinSet::new();
        for addr in self.known_addrs() {
            let me = self.clone();
            set.spawn(async move {
                let node = me.node(&addr);
                let d = Instant::now() + me.cfg.attempt_timeout;
                let r = node
                    .call(encoded(&[b"PING"]), Mode::ReadWrite, &me.limits, d)
                    .await;
                me.observe(&r);
            });
        }
        while set.join_next().await.is_some() {}
    }
}

impl Inner {
    /// Reads `signal` from every known node: one `INFO <section>` each,
    /// concurrently, each bounded by the attempt timeout. A node that
    /// does not answer keeps its last figure (and feeds its breaker).
    async fn poll_load(self: &Arc<Self>, signal: LoadSignal) {
        let (section, field) = signal.info_field();
        let mut set = tokio::task::JoinSet::new();
        for addr in self.known_addrs() {
            let me = self.clone();
            set.spawn(async move {
                let node = me.node(&addr);
                let d = Instant::now() + me.cfg.attempt_timeout;
                let req = encoded(&[b"INFO", section.as_bytes()]);
                let r = node.call(req, Mode::ReadWrite, &me.limits, d).await;
                me.observe(&r);
                let text = match r {
                    Ok(Frame::Bulk(t) | Frame::Verbatim { text: t, .. }) => t,
                    _ => return,
                };
                if let Some(v) = info_value(&text, field) {
                    let mut load = node.load.lock().unwrap_or_else(|e| e.into_inner());
                    load.update(signal.is_counter(), v, Instant::now());
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// The integer value of `field` in an `INFO` reply (`field:value` lines).
pub(crate) fn info_value(text: &[u8], field: &str) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let v = line.strip_prefix(field.as_bytes())?.strip_prefix(b":")?;
        std::str::from_utf8(v).ok()?.trim().parse().ok()
    })
}

/// Reads the nodes' load every `server_load_interval` while a client
/// handle lives; a round starts only after the previous one ended, so
/// there is at most one request per node in flight.
async fn load_task(
    weak: std::sync::Weak<Inner>,
    mut alive: watch::Receiver<()>,
    signal: LoadSignal,
) {
    loop {
        let next = {
            let Some(inner) = weak.upgrade() else { return };
            let next = Instant::now() + inner.cfg.server_load_interval;
            inner.poll_load(signal).await;
            next
        };
        tokio::select! {
            _ = alive.changed() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// Keeps the topology fresh: on request (MOVED, connection errors), at
/// most once per `refresh_min_interval`, and every `refresh_interval`
/// with a health check. Ends when the last client handle is dropped.
async fn refresh_task(weak: std::sync::Weak<Inner>, mut alive: watch::Receiver<()>) {
    let Some((every, min_gap)) = weak
        .upgrade()
        .map(|i| (i.cfg.refresh_interval, i.cfg.refresh_min_interval))
    else {
        return;
    };
    let mut next_periodic = Instant::now() + every;
    loop {
        let periodic = {
            let Some(inner) = weak.upgrade() else { return };
            let notified = async move { inner.refresh.notified().await };
            tokio::select! {
                _ = alive.changed() => return,
                _ = notified => false,
                _ = tokio::time::sleep_until(next_periodic) => true,
            }
        };
        let started = Instant::now();
        let Some(inner) = weak.upgrade() else { return };
        let _ = inner.refresh_now().await;
        if periodic {
            inner.health_check().await;
            next_periodic = Instant::now() + every;
        }
        drop(inner);
        tokio::time::sleep_until(started + min_gap).await;
    }
}

impl Client {
    /// Connects to the cluster through `cfg`'s seeds: learns the
    /// topology from the first seed that answers and starts the
    /// background refresh. Fails when no seed answers.
    pub async fn connect(cfg: ClientConfig) -> Result<Client> {
        if cfg.seeds.is_empty() {
            return Err(Error::Config("no seed addresses".into()));
        }
        let (alive_tx, alive_rx) = watch::channel(());
        let inner = Arc::new(Inner {
            limits: cfg.limits(),
            cfg,
            topo: RwLock::new(Arc::new(Topology::empty())),
            nodes: RwLock::new(HashMap::new()),
            refresh: Notify::new(),
            epoch: Instant::now(),
            stats: Stats::default(),
            _alive: alive_tx,
        });
        if let Err(e) = inner.refresh_now().await {
            return Err(Error::Connection {
                addr: inner.cfg.seeds.join(","),
                reason: format!("no seed answered CLUSTER SLOTS: {e}"),
            });
        }
        if let Some(signal) = inner.cfg.strategy.server_load() {
            let alive = inner._alive.subscribe();
            tokio::spawn(load_task(Arc::downgrade(&inner), alive, signal));
        }
        tokio::spawn(refresh_task(Arc::downgrade(&inner), alive_rx));
        Ok(Client { inner })
    }

    /// Runs one command and returns its reply, following redirects and
    /// retrying what may be retried. Error replies come back as
    /// [`Error::Server`].
    pub async fn execute(&self, cmd: &Cmd) -> Result<Frame> {
        let deadline = Instant::now() + self.inner.cfg.request_timeout;
        self.inner.execute(cmd, cmd.encode(), deadline).await
    }

    /// [`execute`](Client::execute), converting the reply.
    pub async fn query<T: FromReply>(&self, cmd: &Cmd) -> Result<T> {
        T::from_reply(self.execute(cmd).await?)
    }

    /// Re-reads the topology now (it also refreshes by itself).
    pub async fn refresh_topology(&self) -> Result<()> {
        self.inner
            .refresh_now()
            .await
            .map_err(|e| Error::Connection {
                addr: "cluster".into(),
                reason: e,
            })
    }

    /// The leader this client would send `key` to, `host:port`.
    pub fn leader_of(&self, key: &[u8]) -> Option<String> {
        self.inner.topo().leader(slot(key)).map(|a| a.to_string())
    }

    /// The load each known node last reported (`host:port`, figure), in
    /// the unit of the strategy's
    /// [`LoadSignal`](crate::strategy::LoadSignal); `None` for a node not
    /// heard from yet, and for all when the strategy reads no load.
    pub fn server_loads(&self) -> Vec<(String, Option<f64>)> {
        let mut v: Vec<(String, Option<f64>)> = self
            .inner
            .known_addrs()
            .iter()
            .map(|a| (a.to_string(), self.inner.node(a).server_load()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// What the client has done so far.
    pub fn stats(&self) -> ClientStats {
        let s = &self.inner.stats;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            requests: l(&s.requests),
            retries: l(&s.retries),
            redirects: l(&s.redirects),
            refreshes: l(&s.refreshes),
            outcome_unknown: l(&s.outcome_unknown),
        }
    }

    /// `GET key`, converted: `None` when the key does not exist.
    pub async fn get<T: FromReply>(&self, key: impl ToArg) -> Result<Option<T>> {
        self.query(&Cmd::new("GET").arg(key)).await
    }

    /// `SET key value [PX ttl]`. Not retried once its outcome is unknown
    /// (a blind retry could overwrite another client's later write); use
    /// [`execute`](Client::execute) with [`Cmd::idempotent`] to allow it.
    pub async fn set(
        &self,
        key: impl ToArg,
        value: impl ToArg,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut c = Cmd::new("SET").arg(key).arg(value);
        if let Some(t) = ttl {
            c = c.arg("PX").arg(t.as_millis().max(1) as u64);
        }
        self.execute(&c).await.map(drop)
    }

    /// `DEL key`: whether it existed.
    pub async fn del(&self, key: impl ToArg) -> Result<bool> {
        self.query(&Cmd::new("DEL").arg(key)).await
    }

    /// `INCRBY key by`: the counter's new value. Never retried once its
    /// outcome is unknown (it would count twice).
    pub async fn incr_by(&self, key: impl ToArg, by: i64) -> Result<i64> {
        self.query(&Cmd::new("INCRBY").arg(key).arg(by)).await
    }

    /// A counter's value (0 when it does not exist).
    pub async fn counter(&self, key: impl ToArg) -> Result<i64> {
        Ok(self.get::<i64>(key).await?.unwrap_or(0))
    }

    /// `PING` to a node the strategy picks.
    pub async fn ping(&self) -> Result<()> {
        self.execute(&Cmd::new("PING")).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::info_value;

    #[test]
    fn info_fields_are_read_by_exact_name() {
        let text = b"# Clients\r\nconnected_clients:17\r\nmaxclients:10000\r\n\r\n# Stats\r\ntotal_commands_processed:123456\r\n";
        assert_eq!(info_value(text, "connected_clients"), Some(17));
        assert_eq!(info_value(text, "total_commands_processed"), Some(123456));
        assert_eq!(info_value(text, "clients"), None, "a prefix is not a field");
        assert_eq!(
            info_value(b"connected_clients:x\r\n", "connected_clients"),
            None
        );
    }
}
