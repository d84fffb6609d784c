//! The registry of connected clients (CLIENT LIST / KILL / INFO).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<Vec<u8>>,
    /// The ACL user it is authenticated as (CLIENT LIST `user=`).
    pub user: Mutex<String>,
    pub lib: Mutex<(String, String)>,
    /// Index of the last command in the command table.
    pub last_cmd: AtomicUsize,
    /// Milliseconds since `created` of the last command.
    pub last_active_ms: AtomicU64,
    pub resp: AtomicU8,
    pub qbuf: AtomicUsize,
    pub obuf: AtomicUsize,
    pub killed: AtomicBool,
    pub kill: Notify,
}

impl ClientInfo {
    /// A client that is not in the registry: a request another node
    /// forwarded here runs as one.
    pub fn detached(addr: SocketAddr) -> ClientInfo {
        ClientInfo {
            id: 0,
            addr,
            laddr: addr,
            created: Instant::now(),
            name: Mutex::new(Vec::new()),
            user: Mutex::new("default".into()),
            lib: Mutex::new((String::new(), String::new())),
            last_cmd: AtomicUsize::new(usize::MAX),
            last_active_ms: AtomicU64::new(0),
            resp: AtomicU8::new(3),
            qbuf: AtomicUsize::new(0),
            obuf: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        }
    }

    pub fn request_kill(&self) {
        self.killed.store(true, Relaxed);
        self.kill.notify_one();
    }

    /// One line of CLIENT LIST / CLIENT INFO, in Redis' field order.
    pub fn describe(&self, cmd_name: &str) -> String {
        let age = self.created.elapsed().as_secs();
        let idle = self.created.elapsed().as_millis() as u64;
        let idle = idle.saturating_sub(self.last_active_ms.load(Relaxed)) / 1000;
        let name = String::from_utf8_lossy(&self.name.lock()).into_owned();
        let (lib_name, lib_ver) = self.lib.lock().clone();
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 tot-mem={} rbs=0 rbp=0 obl=0 oll=0 omem={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            name,
            age,
            idle,
            self.qbuf.load(Relaxed),
            self.qbuf.load(Relaxed) + self.obuf.load(Relaxed),
            self.obuf.load(Relaxed),
            cmd_name,
            self.user.lock(),
            self.resp.load(Relaxed),
            lib_name,
            lib_ver
        )
    }
}

#[derive(Default)]
pub struct Registry {
    clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    next_id: AtomicU64,
    count: AtomicUsize,
}

impl Registry {
    pub fn count(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// Registers a client unless `max` are connected already.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientInfo>> {
        let mut map = self.clients.lock();
        if map.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(Vec::new()),
            user: Mutex::new("default".into()),
            lib: Mutex::new((String::new(), String::new())),
            last_cmd: AtomicUsize::new(usize::MAX),
            last_active_ms: AtomicU64::new(0),
            resp: AtomicU8::new(2),
            qbuf: AtomicUsize::new(0),
            obuf: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        map.insert(id, info.clone());
        self.count.store(map.len(), Relaxed);
        Some(info)
    }

    pub fn remove(&self, id: u64) {
        let mut map = self.clients.lock();
        map.remove(&id);
        self.count.store(map.len(), Relaxed);
    }

    /// Connections logged in as `user` now, not counting client `except`.
    pub fn count_user(&self, user: &str, except: u64) -> usize {
        self.clients
            .lock()
            .values()
            .filter(|c| c.id != except && *c.user.lock() == user)
            .count()
    }

    /// All clients, ordered by id.
    pub fn snapshot(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.clients.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn buffer_bytes(&self) -> usize {
        self.clients
            .lock()
            .values()
            .map(|c| c.qbuf.load(Relaxed) + c.obuf.load(Relaxed))
            .sum()
    }
}
