//! ACL LOG: the latest refusals, newest first, bounded; a refusal equal
//! to a recent one (same reason, context, object and user, within 60 s)
//! only counts again, as Redis groups them.

use std::collections::VecDeque;

/// Entries kept (Redis' `acllog-max-len` default).
pub(crate) const LOG_LEN_MAX: usize = 128;
/// Equal refusals closer than this are one entry.
const GROUP_MS: u64 = 60_000;

#[derive(Clone, Debug)]
pub(crate) struct LogEntry {
    pub count: u64,
    /// `command`, `key`, `channel` or `auth`.
    pub reason: &'static str,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    pub object: String,
    pub username: String,
    pub updated_ms: u64,
    pub client_info: String,
}

#[derive(Default)]
pub(crate) struct AclLog {
    entries: VecDeque<LogEntry>,
}

impl AclLog {
    pub fn add(&mut self, e: LogEntry) {
        let same = self.entries.iter().position(|o| {
            o.reason == e.reason
                && o.context == e.context
                && o.object == e.object
                && o.username == e.username
                && e.updated_ms.saturating_sub(o.updated_ms) < GROUP_MS
        });
        let e = match same.and_then(|i| self.entries.remove(i)) {
            Some(old) => LogEntry {
                count: old.count + 1,
                ..e
            },
            None => e,
        };
        self.entries.push_front(e);
        self.entries.truncate(LOG_LEN_MAX);
    }

    pub fn entries(&self) -> impl Iterator<Item = &LogEntry> {
        self.entries.iter()
    }

    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: &str, at_ms: u64) -> LogEntry {
        LogEntry {
            count: 1,
            reason: "command",
            context: "toplevel",
            object: object.into(),
            username: "u".into(),
            updated_ms: at_ms,
            client_info: String::new(),
        }
    }

    #[test]
    fn equal_refusals_group_and_the_log_is_bounded() {
        let mut log = AclLog::default();
        log.add(entry("get", 0));
        log.add(entry("set", 1));
        log.add(entry("get", 2));
        let v: Vec<_> = log.entries().map(|e| (e.object.clone(), e.count)).collect();
        assert_eq!(v, vec![("get".into(), 2), ("set".into(), 1)]);
        log.add(entry("get", 2 + GROUP_MS));
        assert_eq!(log.entries().count(), 3);
        for i in 0..LOG_LEN_MAX * 2 {
            log.add(entry(&i.to_string(), 0));
        }
        assert_eq!(log.entries().count(), LOG_LEN_MAX);
    }
}
