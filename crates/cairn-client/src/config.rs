//! Client settings, with defaults that suit a cairn cluster on a LAN.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cmd::ReadFrom;
use crate::conn::ConnLimits;
use crate::node::BreakerPolicy;
use crate::retry::RetryPolicy;
use crate::strategy::{LeastOutstanding, LoadBalance};

/// How a [`Client`](crate::Client) connects, routes, balances and retries.
/// Build with [`ClientConfig::new`] and the setters; every bound has a
/// default.
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) seeds: Vec<String>,
    pub(crate) strategy: Arc<dyn LoadBalance>,
    pub(crate) read_from: ReadFrom,
    pub(crate) retry: RetryPolicy,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) attempt_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) refresh_interval: Duration,
    pub(crate) refresh_min_interval: Duration,
    pub(crate) breaker_failures: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) breaker_cooldown_max: Duration,
    pub(crate) server_load_interval: Duration,
    pub(crate) inflight_max: usize,
    pub(crate) queue_max: usize,
    pub(crate) write_buffer_max: usize,
    pub(crate) reply_len_max: usize,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("seeds", &self.seeds)
            .field("strategy", &self.strategy)
            .field("read_from", &self.read_from)
            .field("retry", &self.retry)
            .field("pool_size", &self.pool_size)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration bootstrapping from `seeds` (`host:port` of any
    /// nodes; one reachable node is enough).
    pub fn new<I, S>(seeds: I) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            seeds: seeds.into_iter().map(Into::into).collect(),
            strategy: Arc::new(LeastOutstanding),
            read_from: ReadFrom::Leader,
            retry: RetryPolicy::default(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            // Above the server's own wait for a leader (3 s), so a write
            // that finds no leader is answered -TRYAGAIN (retryable)
            // rather than timing out (unknown).
            attempt_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            refresh_interval: Duration::from_secs(10),
            refresh_min_interval: Duration::from_millis(100),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(1),
            breaker_cooldown_max: Duration::from_secs(8),
            server_load_interval: Duration::from_secs(1),
            inflight_max: 1024,
            queue_max: 1024,
            write_buffer_max: 1 << 20,
            reply_len_max: 512 << 20,
        }
    }

    /// The load-balancing strategy for every choice among nodes
    /// (default [`LeastOutstanding`]).
    pub fn strategy(mut self, s: impl LoadBalance) -> Self {
        self.strategy = Arc::new(s);
        self
    }

    /// Where reads go unless a command says otherwise (default: leaders).
    pub fn read_from(mut self, r: ReadFrom) -> Self {
        self.read_from = r;
        self
    }

    /// Retry limits and backoff.
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// Connections per node and mode (default 2; at least 1).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Bound on connecting and the connection's handshake (default 1 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Bound on one attempt, from sending to the reply (default 5 s).
    pub fn attempt_timeout(mut self, d: Duration) -> Self {
        self.attempt_timeout = d;
        self
    }

    /// Bound on a whole request, retries included (default 15 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Periodic topology refresh and health check (default 10 s), and
    /// the least time between two refreshes however many errors ask for
    /// one (default 100 ms).
    pub fn refresh(mut self, every: Duration, min_interval: Duration) -> Self {
        self.refresh_interval = every.max(Duration::from_millis(1));
        self.refresh_min_interval = min_interval;
        self
    }

    /// Consecutive failures that open a node's circuit breaker (default
    /// 3, at least 1) and how long it stays open (default 1 s). After the
    /// cool-down the breaker is half-open: exactly one request (or
    /// health-check ping) probes the node while others are turned away;
    /// a successful probe closes the breaker, a failed one reopens it
    /// for twice the previous cool-down, up to
    /// [`breaker_cooldown_max`](Self::breaker_cooldown_max).
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cooldown = cooldown;
        self
    }

    /// The longest cool-down after repeated failed probes (default 8 s;
    /// never below the first cool-down, so setting it equal turns the
    /// growth off).
    pub fn breaker_cooldown_max(mut self, d: Duration) -> Self {
        self.breaker_cooldown_max = d;
        self
    }

    /// How often the client reads each node's load, one `INFO` request
    /// per node, when the strategy asks for it
    /// ([`LoadBalance::server_load`](crate::strategy::LoadBalance::server_load),
    /// e.g. [`Weighted::by_server_load`](crate::strategy::Weighted::by_server_load));
    /// default 1 s, at least 10 ms. Strategies that ask for none cost
    /// nothing.
    pub fn server_load_interval(mut self, d: Duration) -> Self {
        self.server_load_interval = d.max(Duration::from_millis(10));
        self
    }

    pub(crate) fn breaker_policy(&self) -> BreakerPolicy {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        BreakerPolicy {
            failures: self.breaker_failures,
            cooldown_ms: ms(self.breaker_cooldown),
            cooldown_ms_max: ms(self.breaker_cooldown_max).max(ms(self.breaker_cooldown)),
        }
    }

    /// Per-connection bounds: requests awaiting replies (default 1024),
    /// requests queued for the connection's task (1024), unsent bytes
    /// buffered (1 MiB), and the largest length a reply may announce
    /// (512 MiB).
    pub fn connection_limits(
        mut self,
        inflight_max: usize,
        queue_max: usize,
        write_buffer_max: usize,
        reply_len_max: usize,
    ) -> Self {
        self.inflight_max = inflight_max.max(1);
        self.queue_max = queue_max.max(1);
        self.write_buffer_max = write_buffer_max.max(1);
        self.reply_len_max = reply_len_max;
        self
    }

    pub(crate) fn limits(&self) -> ConnLimits {
        ConnLimits {
            connect_timeout: self.connect_timeout,
            inflight_max: self.inflight_max,
            queue_max: self.queue_max,
            write_buffer_max: self.write_buffer_max,
            reply_len_max: self.reply_len_max,
        }
    }
}
