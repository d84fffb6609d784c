//! One ACL user: what it may run, which keys it may touch, its
//! passwords; built by applying Redis' rules (`on`, `>pass`, `~pat`,
//! `+@cat`, …) one at a time, and described back in Redis 7's form.
//!
//! The one thing not to get wrong: `ACL SETUSER` applies all its rules
//! or none, so rules are applied to a copy (see `Acl::setuser`), and a
//! user is never changed in place while connections check against it.

use super::category;
use super::sha256;
use crate::cmd::{lookup, table};

/// A key pattern's permissions (`%R~`, `%W~`, `~` = both).
pub(crate) const KEY_READ: u8 = 1;
pub(crate) const KEY_WRITE: u8 = 2;

/// A command rule's target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Cmd(usize),
    /// A category: its `category::NAMES` index.
    Cat(usize),
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub name: Vec<u8>,
    pub enabled: bool,
    pub nopass: bool,
    /// `sanitize-payload` (Some(true)) or `skip-sanitize-payload`.
    pub sanitize: Option<bool>,
    pub passwords: Vec<[u8; 32]>,
    pub allkeys: bool,
    pub patterns: Vec<(Vec<u8>, u8)>,
    pub allchannels: bool,
    pub channels: Vec<Vec<u8>>,
    /// The command part started from `+@all` (later commands included).
    allcommands: bool,
    /// One bit per command table index: may run it.
    commands: Vec<u64>,
    /// Every command and every key: the check is one test.
    pub unrestricted: bool,
}

/// Why a rule was refused; `Display` is Redis' wording.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RuleError {
    Syntax,
    UnknownCommand,
    BadHash,
    NoSuchPassword,
    KeyAfterAll,
    ChannelAfterAll,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleError::Syntax => "Syntax error",
            RuleError::UnknownCommand => "Unknown command or category name in ACL",
            RuleError::BadHash => "The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
            RuleError::NoSuchPassword => "The password you are trying to remove from the user does not exist",
            RuleError::KeyAfterAll => "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
            RuleError::ChannelAfterAll => "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels",
        })
    }
}

fn words() -> usize {
    table().len().div_ceil(64)
}

impl User {
    /// A user as `ACL SETUSER name` creates it: off, no passwords, no
    /// keys, no channels, no commands.
    pub fn new(name: &[u8]) -> User {
        User {
            name: name.to_vec(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            allkeys: false,
            patterns: Vec::new(),
            allchannels: false,
            channels: Vec::new(),
            allcommands: false,
            commands: vec![0; words()],
            unrestricted: false,
        }
    }

    /// Redis' default user: `on nopass ~* &* +@all`.
    pub fn default_user() -> User {
        let mut u = User::new(b"default");
        for r in ["on", "nopass", "~*", "&*", "+@all"] {
            let _ = u.apply(r.as_bytes());
        }
        u
    }

    pub fn may_run(&self, idx: usize) -> bool {
        bit(&self.commands, idx)
    }

    /// Whether a key may be used as `need` (`KEY_READ | KEY_WRITE`, or 0:
    /// any pattern matching will do).
    pub fn may_use_key(&self, key: &[u8], need: u8) -> bool {
        self.allkeys
            || self
                .patterns
                .iter()
                .any(|(p, flags)| flags & need == need && cairn_engine::glob::glob_match(p, key))
    }

    /// Whether `pass` opens this user (enabled, and nopass or one of its
    /// passwords; each compared in constant time).
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let d = sha256::digest(pass);
        let mut ok = false;
        for p in &self.passwords {
            ok |= sha256::ct_eq(p, &d);
        }
        ok
    }

    /// Applies one rule.
    pub fn apply(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_slice() {
            b"on" => self.enabled = true,
            b"off" => self.enabled = false,
            b"nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            b"resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            b"allkeys" | b"~*" => {
                self.allkeys = true;
                self.patterns.clear();
            }
            b"resetkeys" => {
                self.allkeys = false;
                self.patterns.clear();
            }
            b"allchannels" | b"&*" => {
                self.allchannels = true;
                self.channels.clear();
            }
            b"resetchannels" => {
                self.allchannels = false;
                self.channels.clear();
            }
            b"allcommands" | b"+@all" => self.set_base(true),
            b"nocommands" | b"-@all" => self.set_base(false),
            b"sanitize-payload" => self.sanitize = Some(true),
            b"skip-sanitize-payload" => self.sanitize = Some(false),
            b"reset" => {
                for r in ["resetpass", "resetkeys", "resetchannels", "off", "-@all"] {
                    self.apply(r.as_bytes())?;
                }
                self.sanitize = Some(true);
            }
            _ => return self.apply_prefixed(rule),
        }
        self.refresh();
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &[u8]) -> Result<(), RuleError> {
        let Some((&first, rest)) = rule.split_first() else {
            return Err(RuleError::Syntax);
        };
        match first {
            b'>' => {
                let d = sha256::digest(rest);
                self.add_password(d);
            }
            b'#' => {
                let d = sha256::parse_hex(rest).ok_or(RuleError::BadHash)?;
                self.add_password(d);
            }
            b'<' => self.remove_password(&sha256::digest(rest))?,
            b'!' => {
                let d = sha256::parse_hex(rest).ok_or(RuleError::BadHash)?;
                self.remove_password(&d)?;
            }
            b'~' => self.add_pattern(rest, KEY_READ | KEY_WRITE)?,
            b'%' => {
                let (flags, pat) = parse_key_flags(rest)?;
                self.add_pattern(pat, flags)?;
            }
            b'&' => {
                if self.allchannels {
                    return Err(RuleError::ChannelAfterAll);
                }
                pattern_ok(rest)?;
                if !self.channels.iter().any(|c| c == rest) {
                    self.channels.push(rest.to_vec());
                }
            }
            b'+' | b'-' => {
                let allow = first == b'+';
                let target = match rest.strip_prefix(b"@") {
                    Some(cat) => {
                        let name =
                            std::str::from_utf8(cat).map_err(|_| RuleError::UnknownCommand)?;
                        let bit = category::bit(name).ok_or(RuleError::UnknownCommand)?;
                        Target::Cat(bit.trailing_zeros() as usize)
                    }
                    None => Target::Cmd(lookup(rest).ok_or(RuleError::UnknownCommand)?),
                };
                self.command_rule(allow, target);
            }
            _ => return Err(RuleError::Syntax),
        }
        self.refresh();
        Ok(())
    }

    fn add_password(&mut self, d: [u8; 32]) {
        self.nopass = false;
        if !self.passwords.contains(&d) {
            self.passwords.push(d);
        }
    }

    fn remove_password(&mut self, d: &[u8; 32]) -> Result<(), RuleError> {
        let before = self.passwords.len();
        self.passwords.retain(|p| p != d);
        if self.passwords.len() == before {
            return Err(RuleError::NoSuchPassword);
        }
        Ok(())
    }

    fn add_pattern(&mut self, pat: &[u8], flags: u8) -> Result<(), RuleError> {
        if self.allkeys {
            return Err(RuleError::KeyAfterAll);
        }
        pattern_ok(pat)?;
        let merged = match self.patterns.iter_mut().find(|(p, _)| p == pat) {
            Some((_, f)) => {
                *f |= flags;
                *f
            }
            None => {
                self.patterns.push((pat.to_vec(), flags));
                flags
            }
        };
        // `*` readable and writable (`%RW~*`, or `%R~*` then `%W~*`) is
        // allkeys, as in Redis: described as `~*`, and no pattern may
        // follow it (the fuzz target found the description otherwise
        // failing to parse back).
        if pat == b"*" && merged == KEY_READ | KEY_WRITE {
            self.allkeys = true;
            self.patterns.clear();
        }
        Ok(())
    }

    fn set_base(&mut self, all: bool) {
        self.allcommands = all;
        let fill = if all { u64::MAX } else { 0 };
        self.commands = vec![fill; words()];
    }

    fn command_rule(&mut self, allow: bool, target: Target) {
        set_bits(&mut self.commands, allow, target);
    }

    fn refresh(&mut self) {
        let n = table().len();
        self.unrestricted = self.allkeys && (0..n).all(|i| self.may_run(i));
    }

    /// The command part of the description, found as Redis 7.0 finds it
    /// from the bits alone: start from `+@all` or `-@all`, then take the
    /// category that fits best (no more differences than commands in
    /// common, fewest differences, then most in common) until none fits,
    /// then single commands for what is left (in table order; Redis'
    /// order there is its hash table's).
    pub fn describe_commands(&self) -> String {
        let n = table().len();
        let additive = !self.allcommands;
        let mut s = String::from(if additive { "-@all" } else { "+@all" });
        let mut fake = vec![if additive { 0 } else { u64::MAX }; words()];
        let mut temp = self.commands.clone();
        let cats = category::all();
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for c in 0..category::NAMES.len() {
                let (mut on, mut off) = (0, 0);
                for i in (0..n).filter(|&i| cats[i] & (1 << c) != 0) {
                    if bit(&temp, i) {
                        on += 1;
                    } else {
                        off += 1;
                    }
                }
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(c);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(c) = best else { break };
            set_bits(&mut fake, additive, Target::Cat(c));
            set_bits(&mut temp, !additive, Target::Cat(c));
            s.push_str(if additive { " +@" } else { " -@" });
            s.push_str(category::NAMES[c]);
        }
        for (i, spec) in table().iter().enumerate() {
            let want = bit(&self.commands, i);
            if want != bit(&fake, i) {
                s.push_str(if want { " +" } else { " -" });
                s.push_str(spec.name);
            }
        }
        s
    }

    /// Key patterns as GETUSER shows them: `~*`, `~a %R~b %W~c`.
    pub fn describe_keys(&self) -> String {
        if self.allkeys {
            return "~*".into();
        }
        let parts: Vec<String> = self
            .patterns
            .iter()
            .map(|(p, f)| {
                let prefix = match *f {
                    KEY_READ => "%R~",
                    KEY_WRITE => "%W~",
                    _ => "~",
                };
                format!("{prefix}{}", String::from_utf8_lossy(p))
            })
            .collect();
        parts.join(" ")
    }

    /// Channel patterns as GETUSER shows them: `&*`, `&a &b`.
    pub fn describe_channels(&self) -> String {
        if self.allchannels {
            return "&*".into();
        }
        let parts: Vec<String> = self
            .channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect();
        parts.join(" ")
    }

    /// The flags GETUSER lists, in Redis' order.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Some(false) => f.push("skip-sanitize-payload"),
            Some(true) => f.push("sanitize-payload"),
            None => {}
        }
        f
    }

    /// The rules that rebuild this user: ACL LIST's line after the name,
    /// and the ACL file's.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.flags().iter().map(|s| s.to_string()).collect();
        parts.extend(
            self.passwords
                .iter()
                .map(|p| format!("#{}", sha256::hex(p))),
        );
        let keys = self.describe_keys();
        if !keys.is_empty() {
            parts.push(keys);
        }
        if self.allchannels {
            parts.push("&*".into());
        } else {
            parts.push("resetchannels".into());
            let ch = self.describe_channels();
            if !ch.is_empty() {
                parts.push(ch);
            }
        }
        parts.push(self.describe_commands());
        parts.join(" ")
    }
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bits(bits: &mut [u64], allow: bool, t: Target) {
    let mut set = |i: usize| {
        if allow {
            bits[i / 64] |= 1 << (i % 64);
        } else {
            bits[i / 64] &= !(1 << (i % 64));
        }
    };
    match t {
        Target::Cmd(i) => set(i),
        Target::Cat(c) => {
            for (i, cats) in category::all().iter().enumerate() {
                if cats & (1 << c) != 0 {
                    set(i);
                }
            }
        }
    }
}

/// A key or channel pattern must survive the user's description (ACL
/// LIST, the ACL file, cluster replication), a line of rules split at
/// spaces: no whitespace or NUL (Redis' rule), and UTF-8 (cairn's: the
/// description is text).
fn pattern_ok(p: &[u8]) -> Result<(), RuleError> {
    // Any Unicode whitespace, not only ASCII: ACL files and descriptions
    // are split with `split_whitespace` (fuzzing found U+205F splitting a
    // channel pattern into a password rule).
    match std::str::from_utf8(p) {
        Ok(s) if !s.chars().any(|c| c.is_whitespace() || c == '\0') => Ok(()),
        _ => Err(RuleError::Syntax),
    }
}

/// `%RW~pat` after the `%`: the flags (each of R and W at most once, at
/// least one) and the pattern.
fn parse_key_flags(s: &[u8]) -> Result<(u8, &[u8]), RuleError> {
    let tilde = s.iter().position(|&c| c == b'~').ok_or(RuleError::Syntax)?;
    let mut flags = 0;
    for &c in &s[..tilde] {
        let f = match c.to_ascii_uppercase() {
            b'R' => KEY_READ,
            b'W' => KEY_WRITE,
            _ => return Err(RuleError::Syntax),
        };
        if flags & f != 0 {
            return Err(RuleError::Syntax);
        }
        flags |= f;
    }
    if flags == 0 {
        return Err(RuleError::Syntax);
    }
    Ok((flags, &s[tilde + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &[&str]) -> Result<User, RuleError> {
        let mut u = User::new(b"u");
        for r in rules {
            u.apply(r.as_bytes())?;
        }
        Ok(u)
    }

    fn commands(rules: &[&str]) -> String {
        user(rules)
            .map(|u| u.describe_commands())
            .unwrap_or_default()
    }

    #[test]
    fn bad_rules_give_redis_reasons() {
        assert_eq!(user(&["foo"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["+nosuch"]).err(), Some(RuleError::UnknownCommand));
        assert_eq!(user(&["+@nosuch"]).err(), Some(RuleError::UnknownCommand));
        assert_eq!(user(&["#abc"]).err(), Some(RuleError::BadHash));
        assert_eq!(user(&["!abc"]).err(), Some(RuleError::BadHash));
        assert_eq!(user(&["<nope"]).err(), Some(RuleError::NoSuchPassword));
        assert_eq!(user(&["%Q~a"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["%~a"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["%RR~a"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["%R"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["~*", "~a"]).err(), Some(RuleError::KeyAfterAll));
        assert_eq!(
            user(&["allkeys", "%R~*"]).err(),
            Some(RuleError::KeyAfterAll)
        );
        assert_eq!(user(&["&*", "&x"]).err(), Some(RuleError::ChannelAfterAll));
        // Found by fuzzing: `*` readable and writable is allkeys.
        assert_eq!(user(&["%RW~*", "~a"]).err(), Some(RuleError::KeyAfterAll));
        assert_eq!(
            user(&["%R~*", "%W~*", "~a"]).err(),
            Some(RuleError::KeyAfterAll)
        );
        assert_eq!(user(&[""]).err(), Some(RuleError::Syntax));
        // Found by fuzzing: a pattern must survive the description.
        assert_eq!(user(&["~a\rb"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["%R~a b"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["&a\tb"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["~a\u{0}"]).err(), Some(RuleError::Syntax));
        assert_eq!(user(&["&pw\u{205f}>w"]).err(), Some(RuleError::Syntax));
        assert_eq!(RuleError::Syntax.to_string(), "Syntax error",);
    }

    #[test]
    fn command_rules_describe_as_redis_7_does() {
        assert_eq!(
            commands(&[
                "+get",
                "+set",
                "-get",
                "+@hash",
                "-@hash",
                "allcommands",
                "-get"
            ]),
            "+@all -get"
        );
        assert_eq!(
            commands(&["+@hash", "-hdel", "+get"]),
            "-@all +@hash +get -hdel"
        );
        // Redis 7.0.15 (single commands in table order here).
        assert_eq!(
            commands(&["+get", "+set", "+@hash", "-hdel", "+@transaction", "+incr"]),
            "-@all +@transaction +@hash +get +set +incr -hdel"
        );
        // (HEXPIRE and friends are Redis 7.4's, listed as 7.4 would.)
        assert_eq!(
            commands(&["+@read", "+@hash"]),
            "-@all +@read +hset +hmset +hsetnx +hdel +hincrby +hincrbyfloat +hexpire +hpexpire +hexpireat +hpexpireat +hpersist"
        );
        assert_eq!(commands(&["+@hash", "-@hash"]), "-@all");
        assert_eq!(commands(&["-@hash"]), "-@all");
        assert_eq!(commands(&["+get", "-@string"]), "-@all");
        assert_eq!(commands(&["+get", "-@hash"]), "-@all +get");
        assert_eq!(commands(&["+@all", "-@hash", "+@hash"]), "+@all");
        assert_eq!(commands(&["+@read", "-@write"]), "-@all +@read");
        assert_eq!(commands(&["+get", "+@read", "-get"]), "-@all +@read -get");
        assert_eq!(commands(&["+@read", "-get", "+@read"]), "-@all +@read");
        assert_eq!(commands(&["+hget", "-@hash", "+@string"]), "-@all +@string");
        assert_eq!(commands(&["nocommands", "+GET"]), "-@all +get");
    }

    #[test]
    fn keys_channels_and_passwords_describe_as_redis_7_does() {
        let u = user(&["%RW~a", "%R~a", "%W~b", "%R~b", "%R~c", "&x", "&y", "&x"]).expect("valid");
        assert_eq!(u.describe(), "off ~a ~b %R~c resetchannels &x &y -@all");
        let u = user(&["on", ">pw", "~k*", "%R~r*", "%W~w*", "&ch", "+get"]).expect("valid");
        assert_eq!(
            u.describe(),
            "on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~k* %R~r* %W~w* resetchannels &ch -@all +get"
        );
        let u = user(&["on", ">p", "~*", "&*", "+@all", "reset"]).expect("valid");
        assert_eq!(u.describe(), "off sanitize-payload resetchannels -@all");
        assert_eq!(User::default_user().describe(), "on nopass ~* &* +@all");
        let u = user(&[">a", ">b", ">a", "<b", "nopass"]).expect("valid");
        assert!(u.passwords.is_empty() && u.nopass);
    }

    #[test]
    fn key_permissions_follow_pattern_flags() {
        let u = user(&["%R~r*", "%W~w*", "~k*"]).expect("valid");
        assert!(u.may_use_key(b"r1", KEY_READ));
        assert!(!u.may_use_key(b"r1", KEY_WRITE));
        assert!(u.may_use_key(b"w1", KEY_WRITE));
        assert!(!u.may_use_key(b"w1", KEY_READ | KEY_WRITE));
        assert!(u.may_use_key(b"k1", KEY_READ | KEY_WRITE));
        assert!(u.may_use_key(b"w1", 0));
        assert!(!u.may_use_key(b"x", 0));
    }

    #[test]
    fn passwords_open_only_an_enabled_user() {
        let mut u = user(&[">secret"]).expect("valid");
        assert!(!u.password_ok(b"secret"));
        u.apply(b"on").expect("valid");
        assert!(u.password_ok(b"secret"));
        assert!(!u.password_ok(b"other"));
        assert!(User::default_user().password_ok(b"anything"));
        assert!(User::default_user().unrestricted);
    }

    const RULES: &[&str] = &[
        "on",
        "off",
        "nopass",
        "resetpass",
        ">a",
        ">b",
        "<a",
        "~a*",
        "%R~b*",
        "%W~c*",
        "%RW~d",
        "allkeys",
        "resetkeys",
        "&x",
        "allchannels",
        "resetchannels",
        "+get",
        "-get",
        "+set",
        "-hdel",
        "+@read",
        "-@write",
        "+@hash",
        "-@string",
        "+@keyspace",
        "-@dangerous",
        "allcommands",
        "nocommands",
        "+@all",
        "-@all",
        "reset",
        "+@lock",
        "-lock.acquire",
        "sanitize-payload",
        "skip-sanitize-payload",
        "+@fast",
        "-@slow",
        "+@transaction",
    ];

    proptest::proptest! {
        /// What ACL LIST, ACL SAVE and cluster replication rely on: a
        /// user's description, applied to a new user, gives the same user.
        #[test]
        fn a_description_rebuilds_the_same_user(picks in proptest::collection::vec(0..RULES.len(), 0..24)) {
            let mut u = User::new(b"u");
            for &i in &picks {
                let _ = u.apply(RULES[i].as_bytes());
            }
            let d = u.describe();
            let mut again = User::new(b"u");
            for r in d.split_whitespace() {
                again.apply(r.as_bytes()).expect("a description applies");
            }
            proptest::prop_assert_eq!(&again.describe(), &d);
            proptest::prop_assert_eq!(&again.commands, &u.commands);
            proptest::prop_assert_eq!(again.unrestricted, u.unrestricted);
            for key in [&b"a1"[..], b"b1", b"c1", b"d", b"zz"] {
                for need in [0, KEY_READ, KEY_WRITE, KEY_READ | KEY_WRITE] {
                    proptest::prop_assert_eq!(again.may_use_key(key, need), u.may_use_key(key, need));
                }
            }
            for pass in [&b"a"[..], b"b", b"c"] {
                proptest::prop_assert_eq!(again.password_ok(pass), u.password_ok(pass));
            }
        }

        /// Any bytes as a rule: an error or a change, never a panic.
        #[test]
        fn arbitrary_rules_never_panic(rule in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let mut u = User::default_user();
            let _ = u.apply(&rule);
            let _ = u.describe();
        }
    }
}
