//! Users and access control with Redis' ACL model (docs/design/acl.md):
//! the users (`Acl`), the per-command check (`check`), the ACL LOG, and
//! the ACL file.
//!
//! The thing not to get wrong: the check runs once per command, before
//! it runs, queues (MULTI) or leaves this node (cluster routing), in
//! `dispatch`; nothing else decides access. A connection keeps its
//! user's `Arc` and the registry's epoch; any ACL change bumps the epoch
//! and the connection looks its user up again at its next command (a
//! deleted user's connections are closed, as Redis does).

pub(crate) mod category;
mod log;
pub(crate) mod sha256;
pub(crate) mod user;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub(crate) use log::{AclLog, LogEntry};
pub(crate) use user::User;

use crate::cmd::{table, Spec};
use category::KeyUse;

/// Most users: each ACL SETUSER of a new name past this is refused.
pub(crate) const USERS_MAX: usize = 10_000;
/// Failed AUTH/HELLO AUTH attempts after which a connection is closed
/// (Redis has no such bound; a password guesser must reconnect, which
/// `maxclients` and the accept path bound).
pub(crate) const AUTH_FAILURES_MAX: u32 = 10;

pub(crate) const NOAUTH: &str = "NOAUTH Authentication required.";
pub(crate) const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The users of one server.
pub(crate) struct Acl {
    users: RwLock<BTreeMap<Vec<u8>, Arc<User>>>,
    /// Bumped by every change: connections re-read their user.
    epoch: AtomicU64,
    pub log: Mutex<AclLog>,
    /// What CONFIG GET requirepass answers.
    requirepass: Mutex<String>,
    /// Cluster mode: the meta state's epoch whose users are installed.
    meta_epoch: AtomicU64,
}

impl Acl {
    /// The default user only; `requirepass` (non-empty) is its password.
    pub fn new(requirepass: &str) -> Acl {
        let mut users = BTreeMap::new();
        users.insert(b"default".to_vec(), Arc::new(User::default_user()));
        let acl = Acl {
            users: RwLock::new(users),
            epoch: AtomicU64::new(1),
            log: Mutex::new(AclLog::default()),
            requirepass: Mutex::new(String::new()),
            meta_epoch: AtomicU64::new(0),
        };
        acl.set_requirepass(requirepass);
        acl
    }

    /// CONFIG SET requirepass, as Redis: `default` gets `resetpass` then
    /// `>pass`, or `nopass` when empty.
    pub fn set_requirepass(&self, pass: &str) {
        let rule = if pass.is_empty() {
            "nopass".to_string()
        } else {
            format!(">{pass}")
        };
        let rules: [&[u8]; 2] = [b"resetpass", rule.as_bytes()];
        // Both rules are valid for any password: this cannot fail.
        let _ = self.setuser(b"default", &rules);
        *self.requirepass.lock() = pass.to_string();
    }

    pub fn meta_epoch(&self) -> u64 {
        self.meta_epoch.load(Relaxed)
    }

    pub fn set_meta_epoch(&self, epoch: u64) {
        self.meta_epoch.store(epoch, Relaxed);
    }

    pub fn requirepass(&self) -> String {
        self.requirepass.lock().clone()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    pub fn get(&self, name: &[u8]) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// The user a new (or RESET) connection starts as: `default` when it
    /// needs no password; otherwise none (NOAUTH until AUTH).
    pub fn initial(&self) -> Option<Arc<User>> {
        self.get(b"default").filter(|u| u.nopass && u.enabled)
    }

    /// The user `name`/`pass` opens, if any.
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        self.get(name).filter(|u| u.password_ok(pass))
    }

    /// ACL SETUSER: all rules or none; `Err` is the reply.
    pub fn setuser(&self, name: &[u8], rules: &[&[u8]]) -> Result<(), String> {
        let mut users = self.users.write();
        let u = Self::preview_in(&users, name, rules)?;
        users.insert(name.to_vec(), Arc::new(u));
        self.epoch.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The user ACL SETUSER would make, without installing it (cluster
    /// mode proposes its description instead).
    pub fn preview(&self, name: &[u8], rules: &[&[u8]]) -> Result<User, String> {
        Self::preview_in(&self.users.read(), name, rules)
    }

    fn preview_in(
        users: &BTreeMap<Vec<u8>, Arc<User>>,
        name: &[u8],
        rules: &[&[u8]],
    ) -> Result<User, String> {
        if name.iter().any(|&c| c == b' ' || c == 0) {
            return Err("ERR Usernames can't contain spaces or null characters".into());
        }
        let mut u = match users.get(name) {
            Some(u) => (**u).clone(),
            None if users.len() >= USERS_MAX => {
                return Err(format!("ERR too many users (at most {USERS_MAX})"))
            }
            None => User::new(name),
        };
        for r in rules {
            u.apply(r).map_err(|e| {
                format!(
                    "ERR Error in ACL SETUSER modifier '{}': {e}",
                    String::from_utf8_lossy(r)
                )
            })?;
        }
        Ok(u)
    }

    /// Cluster mode: installs a user from its description as the meta
    /// group replicated it (`describe()`'s rules), or deletes it when the
    /// description is empty. Every node applies the same descriptions in
    /// the same order, so every node ends with the same users.
    pub fn install(&self, name: &[u8], description: &str) -> Result<(), String> {
        let mut users = self.users.write();
        if description.is_empty() {
            if name != b"default" {
                users.remove(name);
            }
        } else {
            let mut u = User::new(name);
            for r in description.split_whitespace() {
                u.apply(r.as_bytes())
                    .map_err(|e| format!("rule '{r}': {e}"))?;
            }
            users.insert(name.to_vec(), Arc::new(u));
        }
        self.epoch.fetch_add(1, Relaxed);
        Ok(())
    }

    /// ACL DELUSER: how many existed.
    pub fn deluser(&self, names: &[&[u8]]) -> Result<usize, String> {
        if names.iter().any(|n| *n == b"default") {
            return Err("ERR The 'default' user cannot be removed".into());
        }
        let mut users = self.users.write();
        let n = names.iter().filter(|n| users.remove(**n).is_some()).count();
        self.epoch.fetch_add(1, Relaxed);
        Ok(n)
    }

    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.read().values().cloned().collect()
    }

    /// The users as the ACL file and ACL LIST write them.
    pub fn list(&self) -> Vec<String> {
        self.users
            .read()
            .values()
            .map(|u| format!("user {} {}", String::from_utf8_lossy(&u.name), u.describe()))
            .collect()
    }

    /// Replaces every user with those of an ACL file's text; a file
    /// without `default` keeps the current one. All or nothing.
    pub fn load(&self, text: &str, path: &str) -> Result<(), String> {
        let users = parse_file(text, path)?;
        let mut cur = self.users.write();
        let default = cur.get(b"default".as_slice()).cloned();
        *cur = users;
        if let Some(d) = default {
            cur.entry(b"default".to_vec()).or_insert(d);
        }
        self.epoch.fetch_add(1, Relaxed);
        Ok(())
    }
}

/// The meta-group setting that holds user `name` in cluster mode (hex:
/// setting names are lowercased, user names are not).
pub(crate) fn meta_key(name: &[u8]) -> String {
    let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
    format!("{META_PREFIX}{hex}")
}

pub(crate) const META_PREFIX: &str = "acl-user:";

/// The user name a meta-group setting holds, if it is a user.
pub(crate) fn meta_user(key: &str) -> Option<Vec<u8>> {
    let hex = key.strip_prefix(META_PREFIX)?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Parses an ACL file: one `user <name> <rule>...` per line, blank lines
/// ignored; errors name the line, as Redis' do.
pub(crate) fn parse_file(text: &str, path: &str) -> Result<BTreeMap<Vec<u8>, Arc<User>>, String> {
    let mut users = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let err = |why: &str| {
            format!(
                "{path}:{}: {why}. WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
                n + 1
            )
        };
        match words.as_slice() {
            [] => continue,
            ["user", name, rules @ ..] => {
                if users.len() >= USERS_MAX {
                    return Err(err("too many users"));
                }
                if users.contains_key(name.as_bytes()) {
                    return Err(err(&format!("Duplicate user '{name}' found")));
                }
                let mut u = User::new(name.as_bytes());
                for r in rules {
                    u.apply(r.as_bytes())
                        .map_err(|e| err(&format!("Error in applying operation '{r}': {e}")))?;
                }
                users.insert(name.as_bytes().to_vec(), Arc::new(u));
            }
            _ => return Err(err("line should start with user keyword")),
        }
    }
    Ok(users)
}

/// The fuzz target's body (fuzz/fuzz_targets/acl.rs): `data` as an ACL
/// file and as SETUSER rules; every accepted user's description must
/// rebuild the same user. Panics on a violated invariant.
pub fn fuzz(data: &[u8]) {
    let rebuilds = |u: &User| {
        let d = u.describe();
        let again = parse_file(&format!("user x {d}\n"), "fuzz")
            .unwrap_or_else(|e| panic!("a description does not parse: {e}\n{d}"));
        let again = again.get(b"x".as_slice()).expect("the user just parsed");
        assert_eq!(again.describe(), d, "description round trip");
        assert_eq!(again.unrestricted, u.unrestricted);
    };
    if let Ok(users) = parse_file(&String::from_utf8_lossy(data), "fuzz") {
        users.values().for_each(|u| rebuilds(u));
    }
    let acl = Acl::new("");
    let rules: Vec<&[u8]> = data.split(|&c| c == b' ').collect();
    if acl.setuser(b"f", &rules).is_ok() {
        rebuilds(&acl.get(b"f").expect("the user just set"));
    }
}

/// Why a command was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Not authenticated (and the command needs it).
    NoAuth,
    /// The user may not run the command.
    Command,
    /// The user may not use the key at this argument position.
    Key(usize),
    /// The connection's user was deleted: close it.
    UserGone,
}

/// Commands a connection may send before it authenticates.
fn no_auth(spec: &Spec) -> bool {
    matches!(spec.name, "auth" | "hello" | "quit" | "reset")
}

/// Container commands: Redis names the subcommand in NOPERM and the log.
pub(crate) fn full_name(spec: &Spec, argv: &[&[u8]]) -> String {
    const CONTAINERS: &[&str] = &[
        "acl", "client", "cluster", "command", "config", "latency", "memory", "object", "slowlog",
    ];
    match argv.get(1) {
        Some(sub) if CONTAINERS.contains(&spec.name) => format!(
            "{}|{}",
            spec.name,
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ),
        _ => spec.name.to_string(),
    }
}

/// May `user` run command `idx` with these arguments.
pub(crate) fn user_may(user: &User, idx: usize, argv: &[&[u8]]) -> Result<(), Denied> {
    if user.unrestricted {
        return Ok(());
    }
    let spec = &table()[idx];
    // As Redis: AUTH, HELLO, QUIT and RESET are open to every user.
    if no_auth(spec) {
        return Ok(());
    }
    if !user.may_run(idx) {
        return Err(Denied::Command);
    }
    for pos in spec.keys_of(argv) {
        let need = match category::key_use(spec, argv, pos) {
            KeyUse::Read => user::KEY_READ,
            KeyUse::Write => user::KEY_WRITE,
            KeyUse::ReadWrite => user::KEY_READ | user::KEY_WRITE,
            KeyUse::Look => 0,
        };
        if !user.may_use_key(argv[pos], need) {
            return Err(Denied::Key(pos));
        }
    }
    Ok(())
}

/// The per-command check (dispatch calls it after lookup and arity).
/// Cost for the default user: one atomic load and one flag test.
#[inline]
pub(crate) fn check(
    acl: &Acl,
    auth: &mut ConnAuth,
    idx: usize,
    argv: &[&[u8]],
) -> Result<(), Denied> {
    let epoch = acl.epoch();
    if auth.epoch != epoch {
        if let Some(u) = &auth.user {
            match acl.get(&u.name) {
                Some(fresh) => auth.user = Some(fresh),
                // The epoch stays old: every later check says so again.
                None => return Err(Denied::UserGone),
            }
        }
        auth.epoch = epoch;
    }
    match &auth.user {
        Some(u) => user_may(u, idx, argv),
        None if no_auth(&table()[idx]) => Ok(()),
        None => Err(Denied::NoAuth),
    }
}

/// A connection's identity.
#[derive(Default)]
pub(crate) struct ConnAuth {
    /// None: not authenticated.
    pub user: Option<Arc<User>>,
    pub epoch: u64,
    pub failures: u32,
}

impl ConnAuth {
    /// The name ACL WHOAMI and CLIENT LIST show (`default` before AUTH,
    /// as Redis).
    pub fn name(&self) -> String {
        self.user
            .as_ref()
            .map(|u| String::from_utf8_lossy(&u.name).into_owned())
            .unwrap_or_else(|| "default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's body on its seeds and a few odd inputs.
    #[test]
    fn fuzz_body_holds_on_seeds() {
        for input in [
            &b"user default on nopass ~* &* +@all\nuser a on >x %R~r* -@all +get\n"[..],
            b"on >pw ~a* +@read -get",
            b"",
            b"user",
            b"\xff\xfe ~ % & + - @",
            b"reset +@all -@dangerous %W~* &x",
            // Found by the fuzzer: a pattern with a carriage return.
            b"on >pw ~qq\rRR",
        ] {
            fuzz(input);
        }
    }

    #[test]
    fn acl_files_parse_all_or_nothing_with_the_line_in_errors() {
        let users = parse_file("\nuser a on nopass ~* +@all\n\nuser b off\n", "f").expect("valid");
        assert_eq!(users.len(), 2);
        let e = parse_file("user a on\nuser a off\n", "f").expect_err("duplicate");
        assert!(e.starts_with("f:2: Duplicate user 'a' found"), "{e}");
        let e = parse_file("usr a on\n", "f").expect_err("keyword");
        assert!(
            e.starts_with("f:1: line should start with user keyword"),
            "{e}"
        );
        let e = parse_file("user a on +nosuch\n", "f").expect_err("rule");
        assert!(
            e.starts_with("f:1: Error in applying operation '+nosuch': Unknown command"),
            "{e}"
        );
    }

    #[test]
    fn a_load_without_default_keeps_it_and_bumps_the_epoch() {
        let acl = Acl::new("pw");
        let before = acl.epoch();
        acl.load("user a on nopass\n", "f").expect("valid");
        assert!(acl.epoch() > before);
        assert!(acl.authenticate(b"default", b"pw").is_some());
        assert!(acl.authenticate(b"a", b"x").is_some());
        assert!(acl.load("user b on +nosuch\n", "f").is_err());
        assert!(acl.get(b"b").is_none() && acl.get(b"a").is_some());
    }

    #[test]
    fn users_travel_through_meta_settings_by_hex_name() {
        let key = meta_key(b"Alice");
        assert_eq!(meta_user(&key), Some(b"Alice".to_vec()));
        assert_eq!(meta_user("maxmemory"), None);
        let acl = Acl::new("");
        let u = acl
            .preview(b"Alice", &[b"on", b">pw", b"~a*", b"+get"])
            .expect("valid");
        acl.install(b"Alice", &u.describe()).expect("installs");
        let got = acl.get(b"Alice").expect("installed");
        assert_eq!(got.describe(), u.describe());
        assert!(acl.authenticate(b"Alice", b"pw").is_some());
        acl.install(b"Alice", "").expect("deletes");
        assert!(acl.get(b"Alice").is_none());
        acl.install(b"default", "").expect("default stays");
        assert!(acl.get(b"default").is_some());
    }

    #[test]
    fn the_default_user_is_checked_with_one_flag_and_noauth_spares_auth() {
        let acl = Acl::new("pw");
        let mut auth = ConnAuth {
            user: acl.initial(),
            epoch: acl.epoch(),
            failures: 0,
        };
        let get = crate::cmd::lookup(b"get").expect("get");
        let auth_idx = crate::cmd::lookup(b"auth").expect("auth");
        assert_eq!(
            check(&acl, &mut auth, get, &[b"get", b"k"]),
            Err(Denied::NoAuth)
        );
        assert_eq!(check(&acl, &mut auth, auth_idx, &[b"auth", b"pw"]), Ok(()));
        auth.user = acl.authenticate(b"default", b"pw");
        assert_eq!(check(&acl, &mut auth, get, &[b"get", b"k"]), Ok(()));
        acl.setuser(b"default", &[b"-get"]).expect("valid");
        assert_eq!(
            check(&acl, &mut auth, get, &[b"get", b"k"]),
            Err(Denied::Command)
        );
    }
}
