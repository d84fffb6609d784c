//! Snapshots of one keyspace (a Raft group's state machine): a streaming,
//! versioned, checksummed format, and its restore.
//!
//! The thing not to get wrong: [`read`] builds a *new* keyspace and the
//! caller swaps it in only on `Ok`, so a bad snapshot never leaves half a
//! state; and every length is checked against its limit before anything is
//! allocated for it, and what is allocated grows only with the bytes that
//! actually arrived, so a lying length costs an error, not memory.
//!
//! ```text
//! header   magic "CAIRNSNP" | version u8 | flags u8 (0) | reserved u16 (0)
//!          | rng u64 | crc u32                      crc32c of the 20 bytes before
//! chunk*   len u32 (1..=CHUNK_LEN_MAX) | crc u32 | payload
//!          crc = crc32c(chunk index u64 | len u32 | payload), index from 0
//! trailer  0u32 | crc u32 | keys u64
//!          crc = crc32c(header crc | every chunk crc | keys)
//! ```
//!
//! Integers are little-endian; lengths and positions inside records are
//! LEB128 varints, minimally encoded. The chunk payloads, concatenated,
//! are a stream of tagged records; a record may span chunks:
//!
//! ```text
//! entry     tag (INT | INLINE | HEAP | GROWABLE) | key_len | key | meta u32 | body
//!           INT: i64; the others: len | bytes (INLINE: len <= 22)
//! deadline  DEADLINE | position | deadline unix ms u64
//! lock      LOCK | name_len | name | permits | holders
//!           | (owner_len | owner | token u64 | lease_ms u64 | permits
//!              | renewed u64)*
//!           | waiters | (owner_len | owner | lease_ms u64 | permits)*
//!           (version 4: no `renewed`)
//!           (versions 2 and 3: LOCK | name_len | name | holder u8 (0|1)
//!           [| owner_len | owner | token u64 | lease_ms u64]
//!           | waiters | (owner_len | owner | lease_ms u64)*: one permit)
//!
//! versions  VERSIONS | count | (bucket | version u64)*   at most one, last
//! hash      HASH | key_len | key | meta u32 | encoding u8 (0 listpack,
//!           1 hashtable; + 0x80 when fields have deadlines) | count
//!           (>= 1) | (field_len | field | value_len | value)*
//!           [| ttl_count (>= 1) | (field_len | field | deadline_ms u64)*
//!           when 0x80]       an entry like the string ones, in their order
//! set       SET | key_len | key | meta u32 | encoding u8 (0 intset,
//!           1 listpack, 2 hashtable) | count (>= 1) | (member_len
//!           | member)*       in the set's order; intset members in
//!           decimal, ascending
//! list      LIST | key_len | key | meta u32 | encoding u8 (0 listpack,
//!           1 quicklist) | count (>= 1) | (len | element)*   head first
//! zset      ZSET | key_len | key | meta u32 | encoding u8 (0 listpack,
//!           1 skiplist) | count (>= 1) | (member_len | member
//!           | score f64)*   a listpack in order, a skiplist in its
//!           table's order, holes included (version 9): a hole is an
//!           empty member with the NaN score [`ZSET_HOLE_BITS`]
//! ```
//!
//! Version 2 added lock records (after the deadlines, in name order);
//! version 1 snapshots still load, with no locks. Version 3 added the
//! write-version table of WATCH (its non-zero buckets); older snapshots
//! load with an empty table. Version 4 made a lock a semaphore (its
//! permits, several holders, each holder's and waiter's permits); older
//! lock records load as locks of one permit. Version 5 added each holder's
//! `renewed` stamp (the grant or last renewal a leader's expiry names);
//! older holders load with their token there (their grant). Version 6
//! added hash entries (their pairs in the hash's own order, so a restored
//! hash iterates, scans and samples like the original); older snapshots
//! hold only strings and load as before. Version 7 added set and list
//! entries (members and elements in the value's own order, the same
//! reasons); older snapshots hold neither and load as before. Version 8
//! added sorted-set entries (a listpack's members in order, a skiplist's
//! in its table's order, which ZSCAN and ZRANDMEMBER follow); older
//! snapshots hold none and load as before. Version 9 added holes to a
//! skiplist's table (a removed member's position, until the table is
//! compacted): a version-8 reader would refuse their NaN score as
//! corrupt, hence the bump; version-8 zsets have none and load as before.
//!
//! The writer emits entries in position order, then deadlines in the order
//! of the volatile list, so the restored keyspace has the same layout, and
//! with the generator state from the header and each key's access meta it
//! samples, evicts and expires exactly like the original. Expired keys not
//! yet removed are kept. Not carried: the eviction pool, statistics, and
//! configuration (access tracking mode, lazy expiry, `string_len_max`),
//! which the caller sets again on the restored keyspace.

use std::fmt;
use std::io::{self, Read, Write};

use crc::{Crc, Digest, Table};

use crate::bytes::INLINE_MAX;
use crate::hash::Hash;
use crate::keyspace::Keyspace;
use crate::list::List;
use crate::set::Set;
use crate::value::Value;
use crate::zset::ZSet;

/// 9: holes in a skiplist zset's table. 8: sorted-set entries
/// (`tag::ZSET`). 7: set entries (`tag::SET`) and list entries
/// (`tag::LIST`), built on parallel branches and merged as one bump.
pub const SNAPSHOT_VERSION: u8 = 9;
/// First version with sorted-set records.
const ZSETS_SINCE: u8 = 8;
/// First version whose skiplist zsets may hold holes.
const ZSET_HOLES_SINCE: u8 = 9;
/// The score of a hole in a zset record (f64::NAN's bits): the one NaN
/// a reader accepts, so a snapshot has one encoding.
pub const ZSET_HOLE_BITS: u64 = 0x7ff8_0000_0000_0000;
/// First version with list (and set) records.
const LISTS_SINCE: u8 = 7;
/// Oldest version this reader still loads.
pub const SNAPSHOT_VERSION_MIN: u8 = 1;
pub const MAGIC: [u8; 8] = *b"CAIRNSNP";
/// Payload bytes per chunk the writer emits.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Longest chunk payload the reader accepts (room for other writers).
pub const CHUNK_LEN_MAX: usize = 64 * 1024 * 1024;
/// Longest key or string value: Redis' proto-max-bulk-len.
pub const BULK_LEN_MAX: usize = 512 * 1024 * 1024;
/// Most keys a shard holds (`Keyspace` positions are u32, two reserved).
const KEYS_MAX: usize = u32::MAX as usize - 1;

const HEADER_LEN: usize = 24;
const CHUNK_HEADER_LEN: usize = 8;
const TRAILER_LEN: usize = 16;
/// The reader grows a chunk buffer by at most this much per read, so a
/// chunk that claims more than it holds costs at most this much memory.
const READ_STEP: usize = 1024 * 1024;
/// A record-spanning buffer bigger than this is freed after its record.
const SPILL_KEEP: usize = 1024 * 1024;

/// Record tags. Entry tags name the value's type and encoding, so a new
/// value type is a new tag.
mod tag {
    pub const INT: u8 = 1;
    pub const INLINE: u8 = 2;
    pub const HEAP: u8 = 3;
    pub const GROWABLE: u8 = 4;
    pub const HASH: u8 = 5;
    /// A list entry (since version 7).
    pub const LIST: u8 = 6;
    /// A set entry (since version 7).
    pub const SET: u8 = 7;
    /// A sorted-set entry (since version 8).
    pub const ZSET: u8 = 8;
    pub const DEADLINE: u8 = 0x10;
    pub const LOCK: u8 = 0x20;
    pub const VERSIONS: u8 = 0x30;
}

static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&crc::CRC_32_ISCSI);

/// What a snapshot held: keys, and the bytes of the whole stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub keys: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub enum SnapshotError {
    /// The underlying reader or writer failed.
    Io(io::Error),
    /// The stream ended before the trailer.
    Truncated,
    BadMagic,
    UnsupportedVersion(u8),
    /// Header flag bits this version does not know.
    UnsupportedFlags(u8),
    HeaderChecksum,
    /// Chunk `chunk` (counting from 0) does not match its checksum.
    Checksum {
        chunk: u64,
    },
    TrailerChecksum,
    /// A length over its limit, refused before anything was allocated.
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// The checksums hold but the content breaks a rule of the format.
    Corrupt(&'static str),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "snapshot I/O: {e}"),
            SnapshotError::Truncated => write!(f, "snapshot ends before its trailer"),
            SnapshotError::BadMagic => write!(f, "not a cairn snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion(v) => write!(
                f,
                "unsupported snapshot version {v} (this node reads {SNAPSHOT_VERSION_MIN} to {SNAPSHOT_VERSION})"
            ),
            SnapshotError::UnsupportedFlags(b) => {
                write!(f, "snapshot header has unknown flags {b:#04x}")
            }
            SnapshotError::HeaderChecksum => write!(f, "snapshot header checksum mismatch"),
            SnapshotError::Checksum { chunk } => {
                write!(f, "snapshot chunk {chunk} checksum mismatch")
            }
            SnapshotError::TrailerChecksum => write!(f, "snapshot trailer checksum mismatch"),
            SnapshotError::TooLarge { what, len, max } => write!(
                f,
                "snapshot {what} of {len} bytes exceeds the limit of {max} bytes"
            ),
            SnapshotError::Corrupt(why) => write!(f, "corrupt snapshot: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => SnapshotError::Truncated,
            _ => SnapshotError::Io(e),
        }
    }
}

// ---- writing ----

/// Writes the whole keyspace to `w` in chunks of [`CHUNK_LEN`] bytes, then
/// flushes `w`. Memory: one chunk. On `Err` what was written is garbage.
pub fn write(ks: &Keyspace, w: &mut impl Write) -> Result<SnapshotInfo, SnapshotError> {
    write_chunked(ks, w, CHUNK_LEN)
}

fn write_chunked<W: Write>(
    ks: &Keyspace,
    w: &mut W,
    chunk_len: usize,
) -> Result<SnapshotInfo, SnapshotError> {
    let mut out = ChunkWriter::start(w, ks.rng_state(), chunk_len)?;
    for (key, value, meta) in ks.stored_entries() {
        put_entry(&mut out, key, value, meta)?;
    }
    for (pos, deadline_ms) in ks.stored_deadlines() {
        let mut rec = Small::default();
        rec.byte(tag::DEADLINE);
        rec.varint(pos as u64);
        rec.bytes(&deadline_ms.to_le_bytes());
        out.put(rec.as_slice())?;
    }
    let mut locks: Vec<_> = ks.locks.iter().collect();
    locks.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (name, lock) in locks {
        put_lock(&mut out, name, lock)?;
    }
    let versions: Vec<(usize, u64)> = ks.stored_versions().collect();
    if !versions.is_empty() {
        let mut rec = Small::default();
        rec.byte(tag::VERSIONS);
        rec.varint(versions.len() as u64);
        out.put(rec.as_slice())?;
        for (bucket, version) in versions {
            let mut rec = Small::default();
            rec.varint(bucket as u64);
            rec.bytes(&version.to_le_bytes());
            out.put(rec.as_slice())?;
        }
    }
    out.finish(ks.len() as u64)
}

fn put_lock<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    name: &[u8],
    lock: &crate::locks::Lock,
) -> Result<(), SnapshotError> {
    check_len("lock name", name.len() as u64)?;
    let mut head = Small::default();
    head.byte(tag::LOCK);
    head.varint(name.len() as u64);
    out.put(head.as_slice())?;
    out.put(name)?;
    let mut rec = Small::default();
    rec.varint(u64::from(lock.limit));
    rec.varint(lock.holders.len() as u64);
    out.put(rec.as_slice())?;
    for h in &lock.holders {
        let mut rec = Small::default();
        rec.varint(h.owner.len() as u64);
        out.put(rec.as_slice())?;
        out.put(&h.owner)?;
        let mut rec = Small::default();
        rec.bytes(&h.token.to_le_bytes());
        rec.bytes(&h.lease_ms.to_le_bytes());
        rec.varint(u64::from(h.permits));
        out.put(rec.as_slice())?;
        out.put(&h.renewed.to_le_bytes())?;
    }
    let mut rec = Small::default();
    rec.varint(lock.waiters.len() as u64);
    out.put(rec.as_slice())?;
    for w in &lock.waiters {
        let mut rec = Small::default();
        rec.varint(w.owner.len() as u64);
        out.put(rec.as_slice())?;
        out.put(&w.owner)?;
        let mut rec = Small::default();
        rec.bytes(&w.lease_ms.to_le_bytes());
        rec.varint(u64::from(w.permits));
        out.put(rec.as_slice())?;
    }
    Ok(())
}

/// A lock record's owner: 1 to `OWNER_MAX` bytes.
fn read_owner<R: Read>(
    input: &mut ChunkReader<'_, R>,
    spill: &mut Vec<u8>,
) -> Result<Box<[u8]>, SnapshotError> {
    let n = input.varint()?;
    if n == 0 || n > crate::locks::OWNER_MAX as u64 {
        return Err(SnapshotError::Corrupt("lock owner length out of range"));
    }
    Ok(input.bytes(n as usize, spill)?.into())
}

fn read_lease<R: Read>(input: &mut ChunkReader<'_, R>) -> Result<u64, SnapshotError> {
    let l = u64::from_le_bytes(input.array()?);
    if l == 0 || l > crate::locks::LEASE_MAX_MS {
        return Err(SnapshotError::Corrupt("lock lease out of range"));
    }
    Ok(l)
}

/// A permit count of a semaphore of `limit` permits: 1 to `limit`.
fn read_permits<R: Read>(input: &mut ChunkReader<'_, R>, limit: u32) -> Result<u32, SnapshotError> {
    let p = input.varint()?;
    if p == 0 || p > u64::from(limit) {
        return Err(SnapshotError::Corrupt("permits out of range"));
    }
    Ok(p as u32)
}

fn read_lock<R: Read>(
    input: &mut ChunkReader<'_, R>,
    spill: &mut Vec<u8>,
) -> Result<crate::locks::Lock, SnapshotError> {
    use crate::locks::{Holder, Lock, Waiter, LIMIT_MAX, WAITERS_MAX};
    // Versions 2 and 3: a lock of one permit, with at most one holder.
    let v4 = input.version >= 4;
    let limit = if v4 {
        let l = input.varint()?;
        if l == 0 || l > u64::from(LIMIT_MAX) {
            return Err(SnapshotError::Corrupt("lock permits out of range"));
        }
        l as u32
    } else {
        1
    };
    let mut lock = Lock::new(limit);
    let holders = if v4 {
        input.varint()?
    } else {
        match input.byte()? {
            0 => 0,
            1 => 1,
            _ => return Err(SnapshotError::Corrupt("lock holder flag is not 0 or 1")),
        }
    };
    if holders > u64::from(limit) {
        return Err(SnapshotError::Corrupt("more lock holders than permits"));
    }
    for _ in 0..holders {
        let owner = read_owner(input, spill)?;
        let token = u64::from_le_bytes(input.array()?);
        let lease_ms = read_lease(input)?;
        let permits = if v4 { read_permits(input, limit)? } else { 1 };
        let renewed = if input.version >= 5 {
            u64::from_le_bytes(input.array()?)
        } else {
            token
        };
        if lock.holders.iter().any(|h| h.owner == owner) {
            return Err(SnapshotError::Corrupt("a lock holder twice"));
        }
        lock.holders.push(Holder {
            owner,
            token,
            lease_ms,
            permits,
            renewed,
        });
        if lock.used() > u64::from(limit) {
            return Err(SnapshotError::Corrupt(
                "more permits held than the lock has",
            ));
        }
    }
    let n = input.varint()?;
    if n > WAITERS_MAX as u64 {
        return Err(SnapshotError::Corrupt("more lock waiters than allowed"));
    }
    for _ in 0..n {
        let owner = read_owner(input, spill)?;
        let lease_ms = read_lease(input)?;
        let permits = if v4 { read_permits(input, limit)? } else { 1 };
        lock.waiters.push_back(Waiter {
            owner,
            lease_ms,
            permits,
        });
    }
    // Free locks with no waiters are never stored; a waiter whose permits
    // fit would have been admitted.
    if lock.holders.is_empty() {
        return Err(SnapshotError::Corrupt("a free lock in the snapshot"));
    }
    if lock
        .waiters
        .front()
        .is_some_and(|w| lock.used() + u64::from(w.permits) <= u64::from(limit))
    {
        return Err(SnapshotError::Corrupt("a lock waiter that fits"));
    }
    Ok(lock)
}

fn put_entry<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    key: &[u8],
    value: &Value,
    meta: u32,
) -> Result<(), SnapshotError> {
    match value {
        Value::Hash(h) => return put_hash(out, key, h, meta),
        Value::Set(s) => return put_set(out, key, s, meta),
        Value::ZSet(z) => return put_zset(out, key, z, meta),
        _ => {}
    }
    if let Value::List(l) = value {
        return put_list(out, key, l, meta);
    }
    let (tag, body): (u8, Option<&[u8]>) = match value {
        Value::Hash(_) | Value::Set(_) | Value::List(_) | Value::ZSet(_) => {
            unreachable!("written above")
        }
        Value::Int(_) => (tag::INT, None),
        Value::Inline { len, data } => (tag::INLINE, Some(&data[..*len as usize])),
        Value::Heap(b) => (tag::HEAP, Some(b)),
        Value::Growable(v) => (tag::GROWABLE, Some(v)),
    };
    // Refuse what the reader would refuse: never write an unreadable file.
    check_len("key", key.len() as u64)?;
    let mut head = Small::default();
    head.byte(tag);
    head.varint(key.len() as u64);
    out.put(head.as_slice())?;
    out.put(key)?;
    let mut tail = Small::default();
    tail.bytes(&meta.to_le_bytes());
    match (value, body) {
        (Value::Int(n), _) => tail.bytes(&n.to_le_bytes()),
        (_, Some(b)) => {
            check_len("value", b.len() as u64)?;
            tail.varint(b.len() as u64);
        }
        (_, None) => unreachable!("every string encoding has a body"),
    }
    out.put(tail.as_slice())?;
    if let Some(b) = body {
        out.put(b)?;
    }
    Ok(())
}

fn put_hash<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    key: &[u8],
    hash: &Hash,
    meta: u32,
) -> Result<(), SnapshotError> {
    let encoding = u8::from(hash.is_table()) | if hash.has_ttls() { HASH_TTLS } else { 0 };
    put_collection_head(out, tag::HASH, key, meta, encoding, hash.len())?;
    for (field, value) in hash.iter() {
        put_string(out, "hash field", field)?;
        put_string(out, "hash value", value)?;
    }
    if hash.has_ttls() {
        let mut n = Small::default();
        n.varint(hash.ttls().count() as u64);
        out.put(n.as_slice())?;
        for (field, at) in hash.ttls() {
            put_string(out, "hash field", field)?;
            out.put(&at.to_le_bytes())?;
        }
    }
    Ok(())
}

/// Flag on a hash entry's encoding byte: field deadlines follow the pairs
/// (HEXPIRE). Readers from before it refuse such an entry (an unknown
/// encoding) rather than drop the deadlines.
const HASH_TTLS: u8 = 0x80;

/// The head of a collection entry (hash, set): `tag | key_len | key |
/// meta u32 | encoding u8 | count`.
fn put_collection_head<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    tag: u8,
    key: &[u8],
    meta: u32,
    encoding: u8,
    count: usize,
) -> Result<(), SnapshotError> {
    check_len("key", key.len() as u64)?;
    let mut head = Small::default();
    head.byte(tag);
    head.varint(key.len() as u64);
    out.put(head.as_slice())?;
    out.put(key)?;
    let mut tail = Small::default();
    tail.bytes(&meta.to_le_bytes());
    tail.byte(encoding);
    tail.varint(count as u64);
    out.put(tail.as_slice())?;
    Ok(())
}

/// `len | bytes`, refusing what the reader would refuse.
fn put_string<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    what: &'static str,
    b: &[u8],
) -> Result<(), SnapshotError> {
    check_len(what, b.len() as u64)?;
    let mut rec = Small::default();
    rec.varint(b.len() as u64);
    out.put(rec.as_slice())?;
    out.put(b)?;
    Ok(())
}

fn put_set<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    key: &[u8],
    set: &Set,
    meta: u32,
) -> Result<(), SnapshotError> {
    put_collection_head(out, tag::SET, key, meta, set.encoding_code(), set.len())?;
    for m in set.iter() {
        m.with(|m| put_string(out, "set member", m))?;
    }
    Ok(())
}

/// Reads a set entry's body (after its key and meta); like a hash's,
/// members are added as they arrive.
fn read_set<R: Read>(
    input: &mut ChunkReader<'_, R>,
    seed: u64,
    spill: &mut Vec<u8>,
) -> Result<Value, SnapshotError> {
    let mut set = Set::restoring(input.byte()?, seed)
        .ok_or(SnapshotError::Corrupt("unknown set encoding"))?;
    let count = input.varint()?;
    if count == 0 {
        return Err(SnapshotError::Corrupt("empty set"));
    }
    if count > crate::set::MEMBERS_MAX as u64 {
        return Err(SnapshotError::TooLarge {
            what: "set member count",
            len: count,
            max: crate::set::MEMBERS_MAX as u64,
        });
    }
    for _ in 0..count {
        let n = input.len("set member")?;
        set.push_restored(input.bytes(n, spill)?)
            .map_err(SnapshotError::Corrupt)?;
    }
    Ok(Value::Set(set))
}

fn put_zset<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    key: &[u8],
    zset: &ZSet,
    meta: u32,
) -> Result<(), SnapshotError> {
    put_collection_head(
        out,
        tag::ZSET,
        key,
        meta,
        zset.encoding_code(),
        zset.stored_len(),
    )?;
    let mut r = Ok(());
    zset.for_each_position(|e| {
        let (score, m) = e.unwrap_or((f64::from_bits(ZSET_HOLE_BITS), b""));
        if r.is_ok() {
            r = put_string(out, "zset member", m).and_then(|()| Ok(out.put(&score.to_le_bytes())?));
        }
    });
    r
}

/// Reads a sorted-set entry's body (after its key and meta); members are
/// added as they arrive, so a lying count costs an error, not memory.
fn read_zset<R: Read>(
    input: &mut ChunkReader<'_, R>,
    seed: u64,
    spill: &mut Vec<u8>,
) -> Result<Value, SnapshotError> {
    let mut zset = ZSet::restoring(input.byte()?, seed)
        .ok_or(SnapshotError::Corrupt("unknown zset encoding"))?;
    let count = input.varint()?;
    if count == 0 {
        return Err(SnapshotError::Corrupt("empty zset"));
    }
    if count > crate::zset::MEMBERS_MAX as u64 {
        return Err(SnapshotError::TooLarge {
            what: "zset member count",
            len: count,
            max: crate::zset::MEMBERS_MAX as u64,
        });
    }
    let mut member = Vec::new();
    for _ in 0..count {
        let n = input.len("zset member")?;
        member.clear();
        member.extend_from_slice(input.bytes(n, spill)?);
        let score = f64::from_le_bytes(input.array()?);
        let hole = input.version >= ZSET_HOLES_SINCE
            && score.to_bits() == ZSET_HOLE_BITS
            && member.is_empty();
        if hole {
            zset.push_restored_hole()
        } else {
            zset.push_restored(&member, score)
        }
        .map_err(SnapshotError::Corrupt)?;
    }
    zset.check_restored().map_err(SnapshotError::Corrupt)?;
    Ok(Value::ZSet(Box::new(zset)))
}

fn put_list<W: Write>(
    out: &mut ChunkWriter<'_, W>,
    key: &[u8],
    list: &List,
    meta: u32,
) -> Result<(), SnapshotError> {
    check_len("key", key.len() as u64)?;
    let mut head = Small::default();
    head.byte(tag::LIST);
    head.varint(key.len() as u64);
    out.put(head.as_slice())?;
    out.put(key)?;
    let mut tail = Small::default();
    tail.bytes(&meta.to_le_bytes());
    tail.byte(u8::from(list.encoding() == "quicklist"));
    tail.varint(list.len() as u64);
    out.put(tail.as_slice())?;
    for e in list.iter() {
        check_len("list element", e.len() as u64)?;
        let mut rec = Small::default();
        rec.varint(e.len() as u64);
        out.put(rec.as_slice())?;
        out.put(e)?;
    }
    Ok(())
}

/// Reads a list entry's body (after its key and meta); elements are
/// added as they arrive, so a lying count costs an error, not memory.
fn read_list<R: Read>(
    input: &mut ChunkReader<'_, R>,
    spill: &mut Vec<u8>,
) -> Result<Value, SnapshotError> {
    let quicklist = match input.byte()? {
        0 => false,
        1 => true,
        _ => return Err(SnapshotError::Corrupt("unknown list encoding")),
    };
    let count = input.varint()?;
    if count == 0 {
        return Err(SnapshotError::Corrupt("empty list"));
    }
    if count > crate::list::ELEMENTS_MAX as u64 {
        return Err(SnapshotError::TooLarge {
            what: "list element count",
            len: count,
            max: crate::list::ELEMENTS_MAX as u64,
        });
    }
    let mut list = List::restoring(quicklist);
    for _ in 0..count {
        let n = input.len("list element")?;
        list.push_restored(input.bytes(n, spill)?)
            .map_err(SnapshotError::Corrupt)?;
    }
    if !list.restored_encoding_ok() {
        return Err(SnapshotError::Corrupt("listpack list over 8 KiB"));
    }
    Ok(Value::List(Box::new(list)))
}

/// Reads a hash entry's body (after its key and meta). The pairs are
/// added as they arrive, so a lying count costs an error, not memory.
fn read_hash<R: Read>(
    input: &mut ChunkReader<'_, R>,
    seed: u64,
    spill: &mut Vec<u8>,
    field: &mut Vec<u8>,
) -> Result<Value, SnapshotError> {
    let code = input.byte()?;
    let table = match code & !HASH_TTLS {
        0 => false,
        1 => true,
        _ => return Err(SnapshotError::Corrupt("unknown hash encoding")),
    };
    let count = input.varint()?;
    if count == 0 {
        return Err(SnapshotError::Corrupt("empty hash"));
    }
    if count > crate::hash::FIELDS_MAX as u64 {
        return Err(SnapshotError::TooLarge {
            what: "hash field count",
            len: count,
            max: crate::hash::FIELDS_MAX as u64,
        });
    }
    let mut hash = Hash::restoring(table, seed);
    for _ in 0..count {
        let n = input.len("hash field")?;
        field.clear();
        field.extend_from_slice(input.bytes(n, spill)?);
        let n = input.len("hash value")?;
        let value = input.bytes(n, spill)?;
        hash.push_restored(field, value)
            .map_err(SnapshotError::Corrupt)?;
    }
    if code & HASH_TTLS != 0 {
        let n = input.varint()?;
        if n == 0 || n > count {
            return Err(SnapshotError::Corrupt("hash deadline count"));
        }
        for _ in 0..n {
            let len = input.len("hash field")?;
            field.clear();
            field.extend_from_slice(input.bytes(len, spill)?);
            let at = u64::from_le_bytes(input.array()?);
            hash.push_restored_ttl(field, at)
                .map_err(SnapshotError::Corrupt)?;
        }
    }
    Ok(Value::Hash(hash))
}

fn check_len(what: &'static str, len: u64) -> Result<(), SnapshotError> {
    if len > BULK_LEN_MAX as u64 {
        return Err(SnapshotError::TooLarge {
            what,
            len,
            max: BULK_LEN_MAX as u64,
        });
    }
    Ok(())
}

/// A few bytes of record fields, assembled on the stack.
#[derive(Default)]
struct Small {
    buf: [u8; 24],
    len: usize,
}

impl Small {
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.byte(n as u8 | 0x80);
            n >>= 7;
        }
        self.byte(n as u8);
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Cuts the record stream into checksummed chunks.
struct ChunkWriter<'w, W: Write> {
    w: &'w mut W,
    buf: Vec<u8>,
    chunk_len: usize,
    chunks: u64,
    /// Chains the header's and every chunk's checksum for the trailer.
    chain: Digest<'static, u32, Table<16>>,
    bytes: u64,
}

impl<'w, W: Write> ChunkWriter<'w, W> {
    fn start(w: &'w mut W, rng_state: u64, chunk_len: usize) -> io::Result<Self> {
        Self::start_version(w, rng_state, chunk_len, SNAPSHOT_VERSION)
    }

    fn start_version(
        w: &'w mut W,
        rng_state: u64,
        chunk_len: usize,
        version: u8,
    ) -> io::Result<Self> {
        assert!((1..=CHUNK_LEN_MAX).contains(&chunk_len), "chunk length");
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&MAGIC);
        header[8] = version;
        header[12..20].copy_from_slice(&rng_state.to_le_bytes());
        let crc = CRC32C.checksum(&header[..20]);
        header[20..].copy_from_slice(&crc.to_le_bytes());
        w.write_all(&header)?;
        let mut chain = CRC32C.digest();
        chain.update(&crc.to_le_bytes());
        Ok(ChunkWriter {
            w,
            buf: Vec::with_capacity(chunk_len),
            chunk_len,
            chunks: 0,
            chain,
            bytes: HEADER_LEN as u64,
        })
    }

    fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        loop {
            let room = self.chunk_len - self.buf.len();
            if data.len() < room {
                self.buf.extend_from_slice(data);
                return Ok(());
            }
            let (now, rest) = data.split_at(room);
            self.buf.extend_from_slice(now);
            self.flush_chunk()?;
            data = rest;
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let crc = chunk_crc(self.chunks, &self.buf);
        let mut head = [0u8; CHUNK_HEADER_LEN];
        head[..4].copy_from_slice(&(self.buf.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&crc.to_le_bytes());
        self.w.write_all(&head)?;
        self.w.write_all(&self.buf)?;
        self.chain.update(&crc.to_le_bytes());
        self.chunks += 1;
        self.bytes += (CHUNK_HEADER_LEN + self.buf.len()) as u64;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self, keys: u64) -> Result<SnapshotInfo, SnapshotError> {
        self.flush_chunk()?;
        self.chain.update(&keys.to_le_bytes());
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[4..8].copy_from_slice(&self.chain.finalize().to_le_bytes());
        trailer[8..].copy_from_slice(&keys.to_le_bytes());
        self.w.write_all(&trailer)?;
        self.w.flush()?;
        Ok(SnapshotInfo {
            keys,
            bytes: self.bytes + TRAILER_LEN as u64,
        })
    }
}

fn chunk_crc(index: u64, payload: &[u8]) -> u32 {
    let mut d = CRC32C.digest();
    d.update(&index.to_le_bytes());
    d.update(&(payload.len() as u32).to_le_bytes());
    d.update(payload);
    d.finalize()
}

/// Wraps raw record bytes in a header, chunks of `chunk_len` and a
/// trailer claiming `keys`, all checksums valid: for tests and the fuzz
/// target, which must get past the checksums to reach the record decoder.
#[doc(hidden)]
pub fn seal(rng_state: u64, records: &[u8], keys: u64, chunk_len: usize) -> Vec<u8> {
    seal_version(SNAPSHOT_VERSION, rng_state, records, keys, chunk_len)
}

/// [`seal`] with another version in the header (older streams, for tests).
pub fn seal_version(
    version: u8,
    rng_state: u64,
    records: &[u8],
    keys: u64,
    chunk_len: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = ChunkWriter::start_version(
        &mut out,
        rng_state,
        chunk_len.clamp(1, CHUNK_LEN_MAX),
        version,
    )
    .expect("writing to a Vec");
    w.put(records).expect("writing to a Vec");
    w.finish(keys).expect("writing to a Vec");
    out
}

// ---- reading ----

/// Reads a snapshot into a new keyspace seeded with `seed` (use the seed of
/// the keyspace it replaces). Reads exactly the snapshot's bytes from `r`,
/// nothing past the trailer; wrap a file in a `BufReader`. Memory beyond
/// the entries: one chunk, plus one record's bytes when it spans chunks.
pub fn read(r: &mut impl Read, seed: u64) -> Result<(Keyspace, SnapshotInfo), SnapshotError> {
    let mut input = ChunkReader::open(r)?;
    let mut ks = Keyspace::new(seed);
    ks.set_rng_state(input.rng_state);
    let mut key = Vec::new();
    let mut spill = Vec::new();
    let mut versions_seen = false;
    let field_seed = ks.field_seed();
    let mut field = Vec::new();
    while let Some(tag) = input.record_start()? {
        match tag {
            tag::DEADLINE => {
                let pos = input.varint()?;
                let deadline_ms = u64::from_le_bytes(input.array()?);
                let pos = usize::try_from(pos).unwrap_or(usize::MAX);
                if !ks.push_restored_deadline(pos, deadline_ms) {
                    return Err(SnapshotError::Corrupt(
                        "deadline for a missing key or a key that already has one",
                    ));
                }
            }
            tag::LOCK if input.version >= 2 => {
                let len = input.len("lock name")?;
                key.clear();
                key.extend_from_slice(input.bytes(len, &mut spill)?);
                let lock = read_lock(&mut input, &mut spill)?;
                if !ks.locks.restore(&key, lock) {
                    return Err(SnapshotError::Corrupt("duplicate lock"));
                }
            }
            tag::VERSIONS if input.version >= 3 => {
                if versions_seen {
                    return Err(SnapshotError::Corrupt("two version tables"));
                }
                versions_seen = true;
                let n = input.varint()?;
                if n > crate::keyspace::VERSION_BUCKETS as u64 {
                    return Err(SnapshotError::Corrupt("more versions than buckets"));
                }
                for _ in 0..n {
                    let bucket = input.varint()?;
                    let version = u64::from_le_bytes(input.array()?);
                    let bucket = usize::try_from(bucket).unwrap_or(usize::MAX);
                    if !ks.push_restored_version(bucket, version) {
                        return Err(SnapshotError::Corrupt("version bucket out of range"));
                    }
                }
            }
            tag::INT..=tag::GROWABLE | tag::HASH | tag::SET | tag::LIST | tag::ZSET => {
                if (tag == tag::HASH && input.version < 6)
                    || (tag == tag::SET && input.version < 7)
                    || (tag == tag::LIST && input.version < LISTS_SINCE)
                    || (tag == tag::ZSET && input.version < ZSETS_SINCE)
                {
                    return Err(SnapshotError::Corrupt("unknown record tag"));
                }
                let key_len = input.len("key")?;
                key.clear();
                key.extend_from_slice(input.bytes(key_len, &mut spill)?);
                let meta = u32::from_le_bytes(input.array()?);
                let value = if tag == tag::HASH {
                    read_hash(&mut input, field_seed, &mut spill, &mut field)?
                } else if tag == tag::SET {
                    read_set(&mut input, field_seed, &mut spill)?
                } else if tag == tag::LIST {
                    read_list(&mut input, &mut spill)?
                } else if tag == tag::ZSET {
                    read_zset(&mut input, field_seed, &mut spill)?
                } else {
                    read_value(&mut input, tag, &mut spill)?
                };
                if ks.len() >= KEYS_MAX {
                    return Err(SnapshotError::TooLarge {
                        what: "key count",
                        len: ks.len() as u64 + 1,
                        max: KEYS_MAX as u64,
                    });
                }
                if !ks.push_restored(&key, value, meta) {
                    return Err(SnapshotError::Corrupt("duplicate key"));
                }
            }
            _ => return Err(SnapshotError::Corrupt("unknown record tag")),
        }
        if spill.capacity() > SPILL_KEEP {
            spill = Vec::new();
        }
    }
    debug_assert!(input.ended);
    let keys = input.keys;
    if keys != ks.len() as u64 {
        return Err(SnapshotError::Corrupt(
            "trailer key count differs from the records",
        ));
    }
    let info = SnapshotInfo {
        keys,
        bytes: input.bytes,
    };
    Ok((ks, info))
}

fn read_value<R: Read>(
    input: &mut ChunkReader<'_, R>,
    tag: u8,
    spill: &mut Vec<u8>,
) -> Result<Value, SnapshotError> {
    if tag == tag::INT {
        return Ok(Value::Int(i64::from_le_bytes(input.array()?)));
    }
    let len = input.len("value")?;
    let b = input.bytes(len, spill)?;
    Ok(match tag {
        tag::INLINE => {
            if len > INLINE_MAX {
                return Err(SnapshotError::Corrupt("inline string longer than 22 bytes"));
            }
            let mut data = [0u8; INLINE_MAX];
            data[..len].copy_from_slice(b);
            Value::Inline {
                len: len as u8,
                data,
            }
        }
        tag::HEAP => Value::Heap(b.into()),
        _ => Value::Growable(Box::new(b.to_vec())),
    })
}

/// Reassembles the record stream from checksummed chunks; no byte of a
/// chunk is decoded before its checksum is verified.
struct ChunkReader<'r, R: Read> {
    r: &'r mut R,
    /// The current chunk is `buf[..len]`; `buf` keeps its high-water size.
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    chunks: u64,
    /// Set once the trailer's marker was read; `keys` is then valid.
    ended: bool,
    keys: u64,
    chain: Digest<'static, u32, Table<16>>,
    bytes: u64,
    rng_state: u64,
    version: u8,
}

impl<'r, R: Read> ChunkReader<'r, R> {
    fn open(r: &'r mut R) -> Result<Self, SnapshotError> {
        let mut h = [0u8; HEADER_LEN];
        r.read_exact(&mut h)?;
        if h[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        // Version before checksum: a newer writer's file should say so.
        let version = h[8];
        if !(SNAPSHOT_VERSION_MIN..=SNAPSHOT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(h[8]));
        }
        let crc = le_u32(&h[20..]);
        if CRC32C.checksum(&h[..20]) != crc {
            return Err(SnapshotError::HeaderChecksum);
        }
        if h[9] != 0 {
            return Err(SnapshotError::UnsupportedFlags(h[9]));
        }
        if h[10..12] != [0, 0] {
            return Err(SnapshotError::Corrupt("reserved header bytes are set"));
        }
        let rng_state = le_u64(&h[12..20]);
        if rng_state == 0 {
            return Err(SnapshotError::Corrupt("generator state is zero"));
        }
        let mut chain = CRC32C.digest();
        chain.update(&crc.to_le_bytes());
        Ok(ChunkReader {
            r,
            buf: Vec::new(),
            len: 0,
            pos: 0,
            chunks: 0,
            ended: false,
            keys: 0,
            chain,
            bytes: HEADER_LEN as u64,
            rng_state,
            version,
        })
    }

    /// Loads the next chunk; false at the trailer (which it verifies).
    fn next_chunk(&mut self) -> Result<bool, SnapshotError> {
        debug_assert!(!self.ended && self.pos == self.len);
        let mut h = [0u8; CHUNK_HEADER_LEN];
        self.r.read_exact(&mut h)?;
        let (len, crc) = (le_u32(&h[..4]) as usize, le_u32(&h[4..]));
        if len == 0 {
            return self.trailer(crc).map(|()| false);
        }
        if len > CHUNK_LEN_MAX {
            return Err(SnapshotError::TooLarge {
                what: "chunk",
                len: len as u64,
                max: CHUNK_LEN_MAX as u64,
            });
        }
        let mut filled = 0;
        while filled < len {
            let end = len.min(filled + READ_STEP);
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            self.r.read_exact(&mut self.buf[filled..end])?;
            filled = end;
        }
        if chunk_crc(self.chunks, &self.buf[..len]) != crc {
            return Err(SnapshotError::Checksum { chunk: self.chunks });
        }
        self.chain.update(&crc.to_le_bytes());
        self.chunks += 1;
        self.bytes += (CHUNK_HEADER_LEN + len) as u64;
        (self.len, self.pos) = (len, 0);
        Ok(true)
    }

    fn trailer(&mut self, crc: u32) -> Result<(), SnapshotError> {
        let mut k = [0u8; 8];
        self.r.read_exact(&mut k)?;
        self.chain.update(&k);
        if self.chain.clone().finalize() != crc {
            return Err(SnapshotError::TrailerChecksum);
        }
        self.keys = le_u64(&k);
        self.bytes += TRAILER_LEN as u64;
        self.ended = true;
        Ok(())
    }

    /// The next record's tag, or `None` after the last record.
    fn record_start(&mut self) -> Result<Option<u8>, SnapshotError> {
        if self.pos == self.len && !self.next_chunk()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    /// Makes at least one byte of a record available.
    fn more(&mut self) -> Result<(), SnapshotError> {
        if self.pos < self.len || self.next_chunk()? {
            return Ok(());
        }
        Err(SnapshotError::Corrupt("a record runs past the last chunk"))
    }

    fn byte(&mut self) -> Result<u8, SnapshotError> {
        self.more()?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        let mut filled = 0;
        while filled < N {
            self.more()?;
            let n = (N - filled).min(self.len - self.pos);
            out[filled..filled + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            (filled, self.pos) = (filled + n, self.pos + n);
        }
        Ok(out)
    }

    /// A minimally encoded LEB128 u64.
    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut n = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(SnapshotError::Corrupt("varint overflows 64 bits"));
            }
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(SnapshotError::Corrupt("varint is not minimally encoded"));
                }
                return Ok(n);
            }
        }
        unreachable!("the tenth byte either ends the varint or is refused")
    }

    /// A length, refused over [`BULK_LEN_MAX`] before anything is allocated.
    fn len(&mut self, what: &'static str) -> Result<usize, SnapshotError> {
        let n = self.varint()?;
        check_len(what, n)?;
        Ok(n as usize)
    }

    /// The next `n` bytes: borrowed from the chunk when they lie in it,
    /// else gathered into `spill`, which grows only as chunks arrive.
    fn bytes<'a>(
        &'a mut self,
        n: usize,
        spill: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], SnapshotError> {
        if self.len - self.pos >= n {
            let at = self.pos;
            self.pos += n;
            return Ok(&self.buf[at..at + n]);
        }
        spill.clear();
        while spill.len() < n {
            self.more()?;
            let k = (n - spill.len()).min(self.len - self.pos);
            spill.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
        }
        Ok(spill)
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evict::Policy;
    use crate::keyspace::AccessTracking;
    use proptest::prelude::*;

    const SEED: u64 = 0x5eed_cafe;

    type State = (u64, Vec<(Vec<u8>, Value, u32)>, Vec<(usize, u64)>);

    /// Everything a snapshot carries, in layout order.
    fn state(ks: &Keyspace) -> State {
        (
            ks.rng_state(),
            ks.stored_entries()
                .map(|(k, v, meta)| (k.to_vec(), v.clone(), meta))
                .collect(),
            ks.stored_deadlines().collect(),
        )
    }

    fn encode(ks: &Keyspace, chunk_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let info = write_chunked(ks, &mut out, chunk_len).expect("write to a Vec");
        assert_eq!(info.bytes, out.len() as u64);
        assert_eq!(info.keys, ks.len() as u64);
        out
    }

    fn decode(bytes: &[u8]) -> Result<(Keyspace, SnapshotInfo), SnapshotError> {
        read(&mut &bytes[..], SEED)
    }

    /// A keyspace with every value encoding, an empty key and value, an
    /// expired key still stored, and entry and volatile orders that differ
    /// from insertion order.
    fn sample_keyspace(n: usize) -> Keyspace {
        let mut ks = Keyspace::new(SEED);
        for i in 0..n {
            let value = match i % 5 {
                0 => i.to_string().into_bytes(),
                1 => Vec::new(),
                2 => format!("v{i}").into_bytes(),
                3 => vec![b'h'; 40],
                _ => vec![b'x'; i % 300],
            };
            let deadline = (i % 3 == 0).then_some(5_000 + i as u64);
            ks.insert(
                format!("key:{i}").as_bytes(),
                Value::from_bytes(&value),
                Some(deadline),
                i as u64,
            );
        }
        ks.insert(b"", Value::from_bytes(b"empty key"), Some(Some(1)), 0);
        let pos = ks.find(b"key:2", 0).expect("stored");
        ks.update_at(pos, 0, |v| v.make_growable().extend_from_slice(b"+grown"));
        for i in (0..n).step_by(7) {
            ks.remove(format!("key:{i}").as_bytes(), 0);
        }
        for i in (0..n).step_by(11) {
            ks.set_deadline(format!("key:{i}").as_bytes(), None, 0);
        }
        add_hashes(&mut ks, n);
        add_lists(&mut ks);
        ks
    }

    fn assert_restored(original: &Keyspace, restored: &Keyspace) {
        assert_eq!(state(original), state(restored));
        assert_eq!(original.digest(), restored.digest());
        assert_eq!(original.len(), restored.len());
        assert_eq!(original.volatile_len(), restored.volatile_len());
    }

    #[test]
    fn empty_keyspace_round_trips() {
        let ks = Keyspace::new(SEED ^ 1);
        let bytes = encode(&ks, CHUNK_LEN);
        assert_eq!(bytes.len(), HEADER_LEN + TRAILER_LEN);
        let (restored, info) = decode(&bytes).expect("valid snapshot");
        assert_eq!(info, SnapshotInfo { keys: 0, bytes: 40 });
        assert!(restored.is_empty());
        assert_restored(&ks, &restored);
    }

    #[test]
    fn watch_versions_survive_a_snapshot_and_count_on_from_there() {
        let mut ks = Keyspace::new(3);
        ks.set_stamp(77, 2);
        ks.insert(b"a", Value::from_bytes(b"1"), None, 0);
        ks.set_stamp(0, 0);
        ks.insert(b"b", Value::from_bytes(b"2"), None, 0);
        ks.remove(b"b", 0);
        let (va, _) = ks.key_version(b"a", 0);
        let (vb, alive) = ks.key_version(b"b", 0);
        assert_eq!(va, (77 << 16) | 2);
        assert!(vb > 0 && !alive);
        let (mut back, _) = decode(&encode(&ks, CHUNK_LEN)).unwrap();
        assert_eq!(back.key_version(b"a", 0).0, va);
        assert_eq!(back.key_version(b"b", 0), (vb, false));
        // Counting on after a restore never repeats a restored version.
        back.insert(b"c", Value::from_bytes(b"3"), None, 0);
        let (vc, _) = back.key_version(b"c", 0);
        assert!(vc > va, "{vc} after {va}");
    }

    #[test]
    fn sample_keyspace_round_trips_at_any_chunk_length() {
        let ks = sample_keyspace(400);
        assert!(ks
            .stored_entries()
            .any(|(_, v, _)| matches!(v, Value::Growable(_))));
        for chunk_len in [1, 2, 7, 64, 1000, CHUNK_LEN] {
            let (restored, info) = decode(&encode(&ks, chunk_len)).expect("valid snapshot");
            assert_eq!(info.keys, ks.len() as u64);
            assert_restored(&ks, &restored);
        }
    }

    #[test]
    fn expired_keys_not_yet_removed_are_kept_with_their_deadlines() {
        let mut ks = Keyspace::new(SEED);
        ks.insert(b"gone", Value::from_bytes(b"x"), Some(Some(10)), 0);
        ks.insert(b"live", Value::from_bytes(b"y"), Some(None), 0);
        let (mut restored, _) = decode(&encode(&ks, CHUNK_LEN)).expect("valid snapshot");
        assert_eq!(restored.len(), 2);
        assert_eq!(restored.deadline(b"gone", 10), Some(Some(10)));
        restored.set_lazy_expire(false);
        assert!(restored.get(b"gone", 11).is_none());
        assert_eq!(restored.len(), 2);
    }

    #[test]
    fn read_consumes_exactly_the_snapshot() {
        let ks = sample_keyspace(50);
        let mut bytes = encode(&ks, 100);
        let len = bytes.len();
        bytes.extend_from_slice(b"next record");
        let mut r = &bytes[..];
        let (_, info) = read(&mut r, SEED).expect("valid snapshot");
        assert_eq!(info.bytes, len as u64);
        assert_eq!(r, b"next record");
    }

    // ---- behaviour after restore ----

    #[derive(Clone, Debug)]
    enum Op {
        Set {
            key: usize,
            value: Vec<u8>,
            ttl_ms: Option<u64>,
        },
        Append {
            key: usize,
            tail: Vec<u8>,
        },
        Del(usize),
        Persist(usize),
        Expire(usize, u64),
        Get(usize),
        Tick(u64),
        RandomKey,
        ExpireSample(usize),
        Evict(usize, usize),
    }

    /// Applies one command; returns what a client would observe.
    fn apply(
        ks: &mut Keyspace,
        replica: bool,
        keys: &[Vec<u8>],
        op: &Op,
        now_ms: &mut u64,
    ) -> String {
        let key = |i: &usize| keys[*i % keys.len()].as_slice();
        let now = *now_ms;
        match op {
            Op::Set {
                key: k,
                value,
                ttl_ms,
            } => {
                if replica {
                    // A replica's SET over an expired key it still stores
                    // adds a second entry (insert's find hides the key but
                    // keeps it); the leader would have replicated its
                    // deletion first, so do that.
                    let stored = ks.stored_deadlines().find(|&(pos, at)| {
                        at < now && ks.stored_entries().nth(pos).is_some_and(|e| e.0 == key(k))
                    });
                    if let Some((_, at)) = stored {
                        ks.remove(key(k), at);
                    }
                }
                // ttl under 5 s gives a deadline already past: stored, expired.
                let deadline = ttl_ms.map(|t| (now + t).saturating_sub(5_000));
                format!(
                    "{}",
                    ks.insert(key(k), Value::from_bytes(value), Some(deadline), now)
                )
            }
            Op::Append { key: k, tail } => match ks.find(key(k), now) {
                Some(pos) => ks.update_at(pos, now, |v| {
                    v.make_growable().extend_from_slice(tail);
                    v.str_len().to_string()
                }),
                None => "absent".into(),
            },
            Op::Del(k) => format!("{:?}", ks.remove(key(k), now)),
            Op::Persist(k) => format!("{}", ks.set_deadline(key(k), None, now)),
            Op::Expire(k, at) => format!("{}", ks.set_deadline(key(k), Some(now + at), now)),
            Op::Get(k) => format!("{:?}", ks.get(key(k), now).map(|v| v.to_vec())),
            Op::Tick(ms) => {
                *now_ms += ms;
                String::new()
            }
            Op::RandomKey => format!("{:?}", ks.random_key(now)),
            Op::ExpireSample(n) => format!("{:?}", ks.expire_sample(now, *n)),
            Op::Evict(p, samples) => {
                let policy = Policy::ALL[*p % Policy::ALL.len()];
                format!("{}", ks.evict_one(policy, *samples, now))
            }
        }
    }

    /// Values of every encoding, including empty, integer and multi-chunk.
    fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..=22),
            2 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            2 => prop::collection::vec(any::<u8>(), 23..400),
            1 => (60_000usize..150_000, any::<u8>())
                .prop_map(|(n, b)| (0..n).map(|i| b.wrapping_add(i as u8)).collect()),
        ]
    }

    fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..24),
            1 => prop::collection::vec(any::<u8>(), 24..300),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0usize..64;
        prop_oneof![
            6 => (k.clone(), value_bytes(), prop::option::of(0u64..60_000))
                .prop_map(|(key, value, ttl_ms)| Op::Set { key, value, ttl_ms }),
            1 => (k.clone(), prop::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(key, tail)| Op::Append { key, tail }),
            1 => k.clone().prop_map(Op::Del),
            1 => k.clone().prop_map(Op::Persist),
            1 => (k.clone(), 0u64..60_000).prop_map(|(key, at)| Op::Expire(key, at)),
            2 => k.prop_map(Op::Get),
            1 => (0u64..20_000).prop_map(Op::Tick),
            1 => Just(Op::RandomKey),
            1 => (1usize..20).prop_map(Op::ExpireSample),
            1 => (0usize..8, 1usize..10).prop_map(|(p, s)| Op::Evict(p, s)),
        ]
    }

    fn tracking() -> impl Strategy<Value = AccessTracking> {
        prop_oneof![
            Just(AccessTracking::Lru),
            (0u32..20, 0u32..3).prop_map(|(log_factor, decay_minutes)| AccessTracking::Lfu {
                log_factor,
                decay_minutes
            }),
        ]
    }

    proptest! {
        // No persisted failures: a case holds values of up to 150 KB, which
        // would make a regressions file of megabytes.
        #![proptest_config(ProptestConfig {
            cases: 96,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn random_keyspaces_round_trip_and_then_behave_identically(
            seed in any::<u64>(),
            tracking in tracking(),
            lazy_expire in any::<bool>(),
            keys in prop::collection::vec(key_bytes(), 1..40),
            before in prop::collection::vec(op(), 0..150),
            after in prop::collection::vec(op(), 0..150),
            chunk_len in prop_oneof![Just(CHUNK_LEN), 1usize..300],
        ) {
            let mut original = Keyspace::new(seed);
            original.set_access_tracking(tracking);
            original.set_lazy_expire(lazy_expire);
            let mut now_ms = 1_000_000;
            for op in &before {
                apply(&mut original, !lazy_expire, &keys, op, &mut now_ms);
            }
            // The eviction pool is not part of a snapshot (module doc).
            original.pool.clear();

            let bytes = encode(&original, chunk_len);
            let (mut restored, info) = read(&mut &bytes[..], seed).expect("valid snapshot");
            prop_assert_eq!(info.keys, original.len() as u64);
            prop_assert_eq!(info.bytes, bytes.len() as u64);
            assert_restored(&original, &restored);

            restored.set_access_tracking(tracking);
            restored.set_lazy_expire(lazy_expire);
            let mut now_restored = now_ms;
            for op in &after {
                let want = apply(&mut original, !lazy_expire, &keys, op, &mut now_ms);
                let got = apply(&mut restored, !lazy_expire, &keys, op, &mut now_restored);
                prop_assert_eq!(want, got, "after {:?}", op);
            }
            assert_restored(&original, &restored);
        }
    }

    #[test]
    fn restored_replica_samples_evicts_and_expires_like_the_original() {
        let trackings = [
            AccessTracking::Lru,
            AccessTracking::Lfu {
                log_factor: 10,
                decay_minutes: 1,
            },
        ];
        for tracking in trackings {
            let mut original = Keyspace::new(SEED);
            original.set_access_tracking(tracking);
            for i in 0..3000u64 {
                let deadline = (i % 3 == 0).then_some(2_000_000 + i * 7);
                let key = format!("k{i}");
                original.insert(
                    key.as_bytes(),
                    Value::Int(i as i64),
                    Some(deadline),
                    i * 100,
                );
            }
            for i in (0..3000u64).rev().step_by(4) {
                original.get(format!("k{i}").as_bytes(), 400_000 + i * 50);
                original.set_deadline(format!("k{i}").as_bytes(), Some(1_000_000 + i), 400_000);
            }
            for i in (0..3000).step_by(13) {
                original.remove(format!("k{i}").as_bytes(), 400_000);
            }
            let (mut restored, _) = decode(&encode(&original, CHUNK_LEN)).expect("valid");
            restored.set_access_tracking(tracking);
            for step in 0..600u64 {
                let now_ms = 1_500_000 + step * 1_000;
                let policy = Policy::ALL[step as usize % Policy::ALL.len()];
                let key = format!("k{}", step * 5 % 3000);
                for ks in [&mut original, &mut restored] {
                    ks.get(key.as_bytes(), now_ms);
                }
                assert_eq!(
                    original.random_key(now_ms),
                    restored.random_key(now_ms),
                    "step {step}"
                );
                assert_eq!(
                    original.expire_sample(now_ms, 5),
                    restored.expire_sample(now_ms, 5)
                );
                assert_eq!(
                    original.evict_one(policy, 5, now_ms),
                    restored.evict_one(policy, 5, now_ms)
                );
                assert_eq!(state(&original), state(&restored), "step {step}");
            }
        }
    }

    // ---- corruption ----

    #[test]
    fn every_single_byte_change_is_rejected() {
        let ks = sample_keyspace(60);
        let bytes = encode(&ks, 61);
        assert!(bytes.len() > 20 * 61, "want many chunks");
        let mut bad = bytes.clone();
        for i in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                bad[i] = bytes[i] ^ mask;
                assert!(decode(&bad).is_err(), "byte {i} ^ {mask:#x} accepted");
            }
            bad[i] = bytes[i];
        }
    }

    #[test]
    fn byte_changes_in_full_size_chunks_are_rejected() {
        let ks = sample_keyspace(3000);
        let bytes = encode(&ks, CHUNK_LEN);
        assert!(bytes.len() > 2 * CHUNK_LEN, "want several full chunks");
        let boundary = HEADER_LEN + CHUNK_HEADER_LEN + CHUNK_LEN;
        let positions = (0..64)
            .chain(boundary - 32..boundary + 32)
            .chain((0..bytes.len()).step_by(997))
            .chain(bytes.len() - 64..bytes.len());
        let mut bad = bytes.clone();
        for i in positions {
            bad[i] = !bytes[i];
            assert!(decode(&bad).is_err(), "byte {i} flipped accepted");
            bad[i] = bytes[i];
        }
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let bytes = encode(&sample_keyspace(60), 61);
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut]) {
                Err(SnapshotError::Truncated) => {}
                other => panic!("cut at {cut}: {:?}", other.map(|(_, info)| info)),
            }
        }
    }

    #[test]
    fn swapped_chunks_are_rejected() {
        let bytes = encode(&sample_keyspace(60), 64);
        let chunk = CHUNK_HEADER_LEN + 64;
        let (a, b) = (HEADER_LEN, HEADER_LEN + chunk);
        let mut bad = bytes.clone();
        bad[a..a + chunk].copy_from_slice(&bytes[b..b + chunk]);
        bad[b..b + chunk].copy_from_slice(&bytes[a..a + chunk]);
        assert!(matches!(
            decode(&bad),
            Err(SnapshotError::Checksum { chunk: 0 })
        ));
    }

    #[test]
    fn header_errors_name_their_cause() {
        let bytes = encode(&sample_keyspace(10), CHUNK_LEN);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(SnapshotError::BadMagic)));
        for v in [0, SNAPSHOT_VERSION + 1] {
            let mut bad = bytes.clone();
            bad[8] = v;
            assert!(matches!(
                decode(&bad),
                Err(SnapshotError::UnsupportedVersion(x)) if x == v
            ));
        }
        let mut bad = bytes.clone();
        bad[13] ^= 1;
        assert!(matches!(decode(&bad), Err(SnapshotError::HeaderChecksum)));
        let reheader = |patch: &dyn Fn(&mut [u8])| {
            let mut bad = bytes.clone();
            patch(&mut bad);
            let crc = CRC32C.checksum(&bad[..20]);
            bad[20..24].copy_from_slice(&crc.to_le_bytes());
            decode(&bad)
        };
        assert!(matches!(
            reheader(&|h| h[9] = 4),
            Err(SnapshotError::UnsupportedFlags(4))
        ));
        assert!(matches!(
            reheader(&|h| h[11] = 1),
            Err(SnapshotError::Corrupt(_))
        ));
        assert!(matches!(
            reheader(&|h| h[12..20].fill(0)),
            Err(SnapshotError::Corrupt("generator state is zero"))
        ));
    }

    // ---- crafted records, checksums valid ----

    fn entry(tag: u8, key: &[u8], meta: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(tag);
        out.extend_from_slice(varint(key.len() as u64).as_slice());
        out.extend_from_slice(key);
        out.extend_from_slice(&meta.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn varint(n: u64) -> Small {
        let mut s = Small::default();
        s.varint(n);
        s
    }

    fn string(b: &[u8]) -> Vec<u8> {
        let mut out = varint(b.len() as u64).as_slice().to_vec();
        out.extend_from_slice(b);
        out
    }

    fn deadline(pos: u64, at: u64) -> Vec<u8> {
        let mut out = vec![tag::DEADLINE];
        out.extend_from_slice(varint(pos).as_slice());
        out.extend_from_slice(&at.to_le_bytes());
        out
    }

    fn corrupt(records: &[u8], keys: u64) -> &'static str {
        match decode(&seal(3, records, keys, 5)) {
            Err(SnapshotError::Corrupt(why)) => why,
            other => panic!("{:?}", other.map(|(_, info)| info)),
        }
    }

    /// Hashes of both encodings: a listpack, a table of many fields, a
    /// table shrunk by deletes to a few (still a table), one with a
    /// deadline.
    fn add_hashes(ks: &mut Keyspace, n: usize) {
        let seed = ks.field_seed();
        let mut small = crate::hash::Hash::default();
        small.set(b"f1", b"v1", seed).unwrap();
        small.set(b"", b"", seed).unwrap();
        small.set(b"n", b"12", seed).unwrap();
        ks.insert(b"hash:small", Value::Hash(small), Some(None), 0);
        let mut big = crate::hash::Hash::default();
        for i in 0..(n * 3).max(200) {
            big.set(format!("field:{i}").as_bytes(), &vec![b'v'; i % 90], seed)
                .unwrap();
        }
        ks.insert(b"hash:big", Value::Hash(big), Some(Some(9_000)), 0);
        let mut shrunk = crate::hash::Hash::default();
        shrunk.set(b"long", &[b'l'; 100], seed).unwrap();
        shrunk.set(b"a", b"1", seed).unwrap();
        shrunk.set(b"b", b"2", seed).unwrap();
        shrunk.remove(b"long");
        assert_eq!(shrunk.encoding(), "hashtable");
        ks.insert(b"hash:shrunk", Value::Hash(shrunk), Some(None), 0);
    }

    fn hash_record(key: &[u8], encoding: u8, count: u64, pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = vec![encoding];
        body.extend_from_slice(varint(count).as_slice());
        for (f, v) in pairs {
            body.extend(string(f));
            body.extend(string(v));
        }
        entry(tag::HASH, key, 0, &body)
    }

    #[test]
    fn hash_field_deadlines_round_trip_and_bad_ones_are_refused() {
        let mut ks = Keyspace::new(SEED);
        let seed = ks.field_seed();
        for (key, n) in [(&b"hfe:small"[..], 3), (b"hfe:big", 300)] {
            let mut h = crate::hash::Hash::default();
            for i in 0..n {
                h.set(format!("f{i}").as_bytes(), b"v", seed).unwrap();
            }
            h.set_expiry(b"f1", 5_000);
            h.set_expiry(b"f2", 7_000);
            ks.insert(key, Value::Hash(h), Some(None), 0);
        }
        assert_eq!(ks.hash_expiry_tracked(), 2);
        let (mut restored, _) = decode(&encode(&ks, CHUNK_LEN)).expect("valid snapshot");
        assert_eq!(restored.digest(), ks.digest());
        assert_eq!(restored.hash_expiry_tracked(), 2);
        for key in [&b"hfe:small"[..], b"hfe:big"] {
            let h = restored.get_hash(key, 0).unwrap().unwrap();
            assert_eq!(
                (h.expiry(b"f1"), h.expiry(b"f2"), h.expiry(b"f0")),
                (Some(5_000), Some(7_000), None)
            );
        }
        assert_eq!(
            restored.get(b"hfe:small", 0).map(|v| v.encoding()),
            Some("listpackex")
        );
        // A deadline count of 0, more deadlines than fields, or one for a
        // field that is not there: corrupt.
        for (count, field) in [(0u64, &b"a"[..]), (2, b"a"), (1, b"zz")] {
            let mut body = vec![0x80];
            body.extend_from_slice(varint(1).as_slice());
            body.extend(string(b"a"));
            body.extend(string(b"1"));
            body.extend_from_slice(varint(count).as_slice());
            for _ in 0..count {
                body.extend(string(field));
                body.extend_from_slice(&9u64.to_le_bytes());
            }
            let rec = entry(tag::HASH, b"k", 0, &body);
            assert!(decode(&seal(3, &rec, 1, 64)).is_err(), "{count} {field:?}");
        }
    }

    #[test]
    fn hashes_round_trip_with_their_encoding_order_and_deadline() {
        let mut ks = Keyspace::new(SEED);
        add_hashes(&mut ks, 10);
        for chunk_len in [1, 7, CHUNK_LEN] {
            let (mut restored, _) = decode(&encode(&ks, chunk_len)).expect("valid snapshot");
            assert_restored(&ks, &restored);
            let enc = |ks: &mut Keyspace, k: &[u8]| {
                ks.get(k, 0).map(|v| v.encoding()).unwrap_or("absent")
            };
            assert_eq!(enc(&mut restored, b"hash:small"), "listpack");
            assert_eq!(enc(&mut restored, b"hash:big"), "hashtable");
            assert_eq!(enc(&mut restored, b"hash:shrunk"), "hashtable");
            assert_eq!(restored.deadline(b"hash:big", 0), Some(Some(9_000)));
            assert_eq!(restored.digest(), ks.digest());
            let h = restored.get_hash(b"hash:shrunk", 0).unwrap().unwrap();
            assert_eq!(h.get(b"b"), Some(&b"2"[..]));
            assert_eq!(h.get(b"long"), None);
            let (a, b) = (
                restored.find(b"hash:big", 0).unwrap(),
                ks.find(b"hash:big", 0).unwrap(),
            );
            // Capacities differ (grown by other steps); the data does not.
            let (got, was) = (restored.usage_at(a), ks.usage_at(b));
            assert!(got.abs_diff(was) * 10 < was, "{got} vs {was}");
        }
    }

    /// Lists of both encodings (a quicklist of 300 elements, one
    /// shrunk back to a listpack) and one with a deadline.
    fn add_lists(ks: &mut Keyspace) {
        use crate::list::{End, List};
        let mut small = List::default();
        small
            .push(End::Right, [&b"a"[..], b"", b"12", &[b'z'; 40]])
            .unwrap();
        ks.insert(b"list:small", Value::List(Box::new(small)), Some(None), 0);
        let mut big = List::default();
        for i in 0..300 {
            big.push(End::Left, [format!("element:{i:0>40}").as_bytes()])
                .unwrap();
        }
        assert_eq!(big.encoding(), "quicklist");
        ks.insert(
            b"list:big",
            Value::List(Box::new(big)),
            Some(Some(7_000)),
            0,
        );
    }

    fn list_record(key: &[u8], encoding: u8, count: u64, elements: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![encoding];
        body.extend_from_slice(varint(count).as_slice());
        for e in elements {
            body.extend(string(e));
        }
        entry(tag::LIST, key, 0, &body)
    }

    #[test]
    fn lists_round_trip_with_their_encoding_order_and_deadline() {
        let mut ks = Keyspace::new(SEED);
        add_lists(&mut ks);
        for chunk_len in [1, 7, CHUNK_LEN] {
            let (mut restored, _) = decode(&encode(&ks, chunk_len)).expect("valid snapshot");
            assert_restored(&ks, &restored);
            assert_eq!(restored.digest(), ks.digest());
            assert_eq!(restored.deadline(b"list:big", 0), Some(Some(7_000)));
            let l = restored.get_list(b"list:big", 0).unwrap().unwrap();
            assert_eq!(l.encoding(), "quicklist");
            assert_eq!(l.get(0), Some(format!("element:{:0>40}", 299).as_bytes()));
            assert_eq!(l.len(), 300);
            let l = restored.get_list(b"list:small", 0).unwrap().unwrap();
            assert_eq!(l.encoding(), "listpack");
            let got: Vec<&[u8]> = l.iter().collect();
            assert_eq!(got, vec![&b"a"[..], b"", b"12", &[b'z'; 40]]);
        }
    }

    #[test]
    fn version_6_snapshots_load_and_know_no_lists() {
        let mut records = entry(tag::INT, b"n", 7, &5i64.to_le_bytes());
        records.extend(hash_record(b"h", 0, 1, &[(b"f", b"v")]));
        let (mut ks, info) = decode(&seal_version(6, 3, &records, 2, 64)).expect("v6 loads");
        assert_eq!(info.keys, 2);
        assert_eq!(
            ks.get_hash(b"h", 0).unwrap().unwrap().get(b"f"),
            Some(&b"v"[..])
        );
        let list = list_record(b"l", 0, 1, &[b"x"]);
        match decode(&seal_version(6, 3, &list, 1, 64)) {
            Err(SnapshotError::Corrupt(why)) => assert_eq!(why, "unknown record tag"),
            other => panic!("{:?}", other.map(|(_, i)| i)),
        }
        let (mut ks, _) = decode(&seal(3, &list, 1, 64)).expect("v7 loads lists");
        assert_eq!(
            ks.get_list(b"l", 0).unwrap().unwrap().get(0),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn list_records_that_break_the_rules_are_corrupt() {
        let big = [b'x'; 5000];
        assert_eq!(corrupt(&list_record(b"l", 0, 0, &[]), 1), "empty list");
        assert_eq!(
            corrupt(&list_record(b"l", 2, 1, &[b"x"]), 1),
            "unknown list encoding"
        );
        assert_eq!(
            corrupt(&list_record(b"l", 0, 2, &[&big, &big]), 1),
            "listpack list over 8 KiB"
        );
        assert!(decode(&seal(3, &list_record(b"l", 1, 2, &[&big, &big]), 1, 5)).is_ok());
        assert!(decode(&seal(3, &list_record(b"l", 1, 1 << 40, &[b"x"]), 1, 5)).is_err());
    }

    #[test]
    fn version_5_snapshots_load_and_know_no_hashes() {
        let mut records = entry(tag::INT, b"n", 7, &5i64.to_le_bytes());
        records.extend(entry(tag::HEAP, b"s", 0, &string(b"text")));
        let (mut ks, info) = decode(&seal_version(5, 3, &records, 2, 64)).expect("v5 loads");
        assert_eq!(info.keys, 2);
        assert_eq!(ks.get(b"s", 0).map(|v| v.to_vec()), Some(b"text".to_vec()));
        let hash = hash_record(b"h", 0, 1, &[(b"f", b"v")]);
        match decode(&seal_version(5, 3, &hash, 1, 64)) {
            Err(SnapshotError::Corrupt(why)) => assert_eq!(why, "unknown record tag"),
            other => panic!("{:?}", other.map(|(_, i)| i)),
        }
        let (mut ks, _) = decode(&seal(3, &hash, 1, 64)).expect("v6 loads hashes");
        assert_eq!(
            ks.get_hash(b"h", 0).unwrap().unwrap().get(b"f"),
            Some(&b"v"[..])
        );
    }

    /// Sets of every encoding: an intset, a listpack, a table of many
    /// members with a deadline, a table shrunk by deletes to a few.
    fn add_sets(ks: &mut Keyspace) {
        let seed = ks.field_seed();
        let mut ints = crate::set::Set::empty();
        for m in ["5", "-3", "9223372036854775807", "0"] {
            ints.add(m.as_bytes(), seed).unwrap();
        }
        ks.insert(b"set:ints", Value::Set(ints), Some(None), 0);
        let mut small = crate::set::Set::empty();
        for m in ["b", "", "12", "a"] {
            small.add(m.as_bytes(), seed).unwrap();
        }
        ks.insert(b"set:small", Value::Set(small), Some(None), 0);
        let mut big = crate::set::Set::empty();
        for i in 0..300 {
            big.add(format!("member:{i}").as_bytes(), seed).unwrap();
        }
        for i in (0..300).step_by(7) {
            big.remove(format!("member:{i}").as_bytes());
        }
        ks.insert(b"set:big", Value::Set(big), Some(Some(9_000)), 0);
        let mut shrunk = crate::set::Set::empty();
        shrunk.add(&[b'l'; 100], seed).unwrap();
        shrunk.add(b"7", seed).unwrap();
        shrunk.remove(&[b'l'; 100]);
        assert_eq!(shrunk.encoding(), "hashtable");
        ks.insert(b"set:shrunk", Value::Set(shrunk), Some(None), 0);
    }

    fn set_members(ks: &mut Keyspace, key: &[u8]) -> Vec<Vec<u8>> {
        let s = ks.get_set(key, 0).unwrap().unwrap();
        s.iter().map(|m| m.to_vec()).collect()
    }

    fn set_record(key: &[u8], encoding: u8, count: u64, members: &[&[u8]]) -> Vec<u8> {
        let mut body = vec![encoding];
        body.extend_from_slice(varint(count).as_slice());
        for m in members {
            body.extend(string(m));
        }
        entry(tag::SET, key, 0, &body)
    }

    #[test]
    fn sets_round_trip_with_their_encoding_order_and_deadline() {
        let mut ks = Keyspace::new(SEED);
        add_sets(&mut ks);
        add_hashes(&mut ks, 3);
        for chunk_len in [1, 7, CHUNK_LEN] {
            let (mut restored, _) = decode(&encode(&ks, chunk_len)).expect("valid snapshot");
            assert_restored(&ks, &restored);
            assert_eq!(restored.digest(), ks.digest());
            for (key, encoding) in [
                (&b"set:ints"[..], "intset"),
                (b"set:small", "listpack"),
                (b"set:big", "hashtable"),
                (b"set:shrunk", "hashtable"),
            ] {
                let got = restored.get(key, 0).map(|v| v.encoding());
                assert_eq!(got, Some(encoding), "{key:?}");
                assert_eq!(set_members(&mut restored, key), set_members(&mut ks, key));
            }
            assert_eq!(restored.deadline(b"set:big", 0), Some(Some(9_000)));
            let s = restored.get_set(b"set:big", 0).unwrap().unwrap();
            assert!(s.contains(b"member:1") && !s.contains(b"member:7"));
        }
    }

    #[test]
    fn version_6_snapshots_load_and_know_no_sets() {
        let hash = hash_record(b"h", 0, 1, &[(b"f", b"v")]);
        let (mut ks, _) = decode(&seal_version(6, 3, &hash, 1, 64)).expect("v6 loads");
        assert_eq!(
            ks.get_hash(b"h", 0).unwrap().unwrap().get(b"f"),
            Some(&b"v"[..])
        );
        let set = set_record(b"s", 0, 2, &[b"1", b"2"]);
        match decode(&seal_version(6, 3, &set, 1, 64)) {
            Err(SnapshotError::Corrupt(why)) => assert_eq!(why, "unknown record tag"),
            other => panic!("{:?}", other.map(|(_, i)| i)),
        }
        let (mut ks, _) = decode(&seal(3, &set, 1, 64)).expect("v7 loads sets");
        assert_eq!(
            set_members(&mut ks, b"s"),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        assert_eq!(ks.get(b"s", 0).map(|v| v.encoding()), Some("intset"));
    }

    /// Sorted sets of both encodings: a listpack (with `-0`, infinities
    /// and ties), a skiplist of many members with a deadline and holes
    /// from deletes (its table order is what ZSCAN follows), a skiplist
    /// shrunk to one member.
    fn add_zsets(ks: &mut Keyspace) {
        let seed = ks.field_seed();
        let mut small = ZSet::for_member(b"a", seed);
        for (m, s) in [
            ("b", 1.0),
            ("a", 1.0),
            ("", f64::NEG_INFINITY),
            ("z", f64::INFINITY),
            ("0", 0.5),
        ] {
            small.insert(m.as_bytes(), s, seed).unwrap();
        }
        ks.insert(b"zset:small", Value::ZSet(Box::new(small)), Some(None), 0);
        let mut big = ZSet::for_member(b"a", seed);
        for i in 0..700 {
            big.insert(
                format!("member:{i}").as_bytes(),
                (i % 13) as f64 - 0.25,
                seed,
            )
            .unwrap();
        }
        for i in (0..700).step_by(9) {
            big.remove(format!("member:{i}").as_bytes());
        }
        big.insert(b"member:3", -0.0, seed).unwrap();
        assert_eq!(big.encoding(), "skiplist");
        ks.insert(
            b"zset:big",
            Value::ZSet(Box::new(big)),
            Some(Some(9_000)),
            0,
        );
        let mut shrunk = ZSet::for_member(&[b'l'; 100], seed);
        shrunk.insert(&[b'l'; 100], 1.0, seed).unwrap();
        shrunk.insert(b"7", 7.0, seed).unwrap();
        shrunk.remove(&[b'l'; 100]);
        ks.insert(b"zset:shrunk", Value::ZSet(Box::new(shrunk)), Some(None), 0);
    }

    fn zset_items(ks: &mut Keyspace, key: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let z = ks.get_zset(key, 0).unwrap().unwrap();
        let mut out = Vec::new();
        z.for_each_position(|e| {
            let (s, m) = e.unwrap_or((f64::from_bits(ZSET_HOLE_BITS), b"<hole>"));
            out.push((s.to_bits(), m.to_vec()));
        });
        out
    }

    fn zset_record(key: &[u8], encoding: u8, count: u64, members: &[(&[u8], f64)]) -> Vec<u8> {
        let mut body = vec![encoding];
        body.extend_from_slice(varint(count).as_slice());
        for (m, s) in members {
            body.extend(string(m));
            body.extend_from_slice(&s.to_le_bytes());
        }
        entry(tag::ZSET, key, 0, &body)
    }

    #[test]
    fn zsets_round_trip_with_their_encoding_order_and_deadline() {
        let mut ks = Keyspace::new(SEED);
        add_zsets(&mut ks);
        add_sets(&mut ks);
        for chunk_len in [1, 7, CHUNK_LEN] {
            let (mut restored, _) = decode(&encode(&ks, chunk_len)).expect("valid snapshot");
            assert_restored(&ks, &restored);
            assert_eq!(restored.digest(), ks.digest());
            for (key, encoding) in [
                (&b"zset:small"[..], "listpack"),
                (b"zset:big", "skiplist"),
                (b"zset:shrunk", "skiplist"),
            ] {
                let got = restored.get(key, 0).map(|v| v.encoding());
                assert_eq!(got, Some(encoding), "{key:?}");
                // Storage order (a skiplist's table order) and scores
                // bit for bit, `-0` included.
                assert_eq!(zset_items(&mut restored, key), zset_items(&mut ks, key));
                let (a, b) = (
                    restored.get_zset(key, 0).unwrap().unwrap().to_vec(),
                    ks.get_zset(key, 0).unwrap().unwrap().to_vec(),
                );
                assert!(a == b, "{key:?}: order");
            }
            assert_eq!(restored.deadline(b"zset:big", 0), Some(Some(9_000)));
            let z = restored.get_zset(b"zset:big", 0).unwrap().unwrap();
            // The removals left holes, and they came back where they were.
            assert!(z.stored_len() > z.len());
            assert_eq!(
                z.score(b"member:3").map(f64::to_bits),
                Some((-0.0f64).to_bits())
            );
            assert_eq!(z.score(b"member:9"), None);
            assert_eq!(
                z.rank(b"member:3"),
                ks.get_zset(b"zset:big", 0)
                    .unwrap()
                    .unwrap()
                    .rank(b"member:3")
            );
        }
    }

    #[test]
    fn version_7_snapshots_load_and_know_no_zsets() {
        let set = set_record(b"s", 0, 2, &[b"1", b"2"]);
        let (mut ks, _) = decode(&seal_version(7, 3, &set, 1, 64)).expect("v7 loads");
        assert_eq!(
            set_members(&mut ks, b"s"),
            vec![b"1".to_vec(), b"2".to_vec()]
        );
        let zset = zset_record(b"z", 0, 2, &[(b"a", 1.0), (b"b", 2.0)]);
        match decode(&seal_version(7, 3, &zset, 1, 64)) {
            Err(SnapshotError::Corrupt(why)) => assert_eq!(why, "unknown record tag"),
            other => panic!("{:?}", other.map(|(_, i)| i)),
        }
        let (mut ks, _) = decode(&seal(3, &zset, 1, 64)).expect("v8 loads zsets");
        assert_eq!(
            zset_items(&mut ks, b"z"),
            vec![
                (1f64.to_bits(), b"a".to_vec()),
                (2f64.to_bits(), b"b".to_vec())
            ]
        );
        assert_eq!(ks.get(b"z", 0).map(|v| v.encoding()), Some("listpack"));
    }

    #[test]
    fn zset_records_that_break_the_rules_are_corrupt() {
        let long = [b'x'; 65];
        let many: Vec<Vec<u8>> = (0..129).map(|i| format!("m{i:03}").into_bytes()).collect();
        let many: Vec<(&[u8], f64)> = many.iter().map(|m| (m.as_slice(), 1.0)).collect();
        for enc in [0, 1] {
            assert_eq!(corrupt(&zset_record(b"z", enc, 0, &[]), 1), "empty zset");
            assert_eq!(
                corrupt(&zset_record(b"z", enc, 1, &[(b"a", f64::NAN)]), 1),
                "zset score that is not a number"
            );
        }
        assert_eq!(
            corrupt(&zset_record(b"z", 2, 1, &[(b"a", 1.0)]), 1),
            "unknown zset encoding"
        );
        assert_eq!(
            corrupt(&zset_record(b"z", 1, 2, &[(b"a", 1.0), (b"a", 2.0)]), 1),
            "duplicate zset member"
        );
        for pair in [
            [(&b"a"[..], 1.0), (b"a", 1.0)],
            [(b"b", 1.0), (b"a", 1.0)],
            [(b"a", 2.0), (b"b", 1.0)],
        ] {
            assert_eq!(
                corrupt(&zset_record(b"z", 0, 2, &pair), 1),
                "listpack zset members out of order"
            );
        }
        assert_eq!(
            corrupt(&zset_record(b"z", 0, 1, &[(&long, 1.0)]), 1),
            "listpack zset member longer than 64 bytes"
        );
        assert_eq!(
            corrupt(&zset_record(b"z", 0, 129, &many), 1),
            "listpack zset with more than 128 members"
        );
        // Holes (version 9): in a skiplist only, never outnumbering the
        // members, and only as the one hole encoding.
        let hole = f64::from_bits(ZSET_HOLE_BITS);
        assert_eq!(
            corrupt(&zset_record(b"z", 0, 2, &[(b"a", 1.0), (b"", hole)]), 1),
            "hole in a listpack zset"
        );
        assert_eq!(
            corrupt(
                &zset_record(b"z", 1, 3, &[(b"", hole), (b"a", 1.0), (b"", hole)]),
                1
            ),
            "zset with more holes than members"
        );
        assert_eq!(
            corrupt(&zset_record(b"z", 1, 1, &[(b"", hole)]), 1),
            "empty zset"
        );
        for (m, s) in [(&b"x"[..], hole), (b"", f64::from_bits(ZSET_HOLE_BITS | 1))] {
            assert_eq!(
                corrupt(&zset_record(b"z", 1, 2, &[(m, s), (b"a", 1.0)]), 1),
                "zset score that is not a number"
            );
        }
        let rec = zset_record(b"z", 1, 3, &[(b"", hole), (b"a", 1.0), (b"b", 2.0)]);
        match decode(&seal_version(8, 3, &rec, 1, 64)) {
            Err(SnapshotError::Corrupt(why)) => assert_eq!(why, "zset score that is not a number"),
            other => panic!("a version-8 hole: {:?}", other.map(|(_, info)| info)),
        }
        let (mut ks, _) = decode(&seal(3, &rec, 1, 64)).expect("valid");
        let z = ks.get_zset(b"z", 0).unwrap().unwrap();
        assert_eq!((z.len(), z.stored_len(), z.stored(0)), (2, 3, None));
        assert_eq!(z.stored(2), Some((2.0, &b"b"[..])));
        // A skiplist takes any order (its table's) and long members.
        let (mut ks, _) = decode(&seal(
            3,
            &zset_record(b"z", 1, 2, &[(&long, 2.0), (b"a", 1.0)]),
            1,
            64,
        ))
        .expect("valid");
        assert_eq!(ks.get_zset(b"z", 0).unwrap().unwrap().rank(&long), Some(1));
    }

    #[test]
    fn set_records_that_break_the_rules_are_corrupt() {
        let long = [b'x'; 65];
        let many: Vec<Vec<u8>> = (0..129).map(|i| format!("m{i}").into_bytes()).collect();
        let many: Vec<&[u8]> = many.iter().map(|m| m.as_slice()).collect();
        let ints: Vec<Vec<u8>> = (0..513).map(|i| i.to_string().into_bytes()).collect();
        let ints: Vec<&[u8]> = ints.iter().map(|m| m.as_slice()).collect();
        for enc in [0, 1, 2] {
            assert_eq!(corrupt(&set_record(b"s", enc, 0, &[]), 1), "empty set");
        }
        assert_eq!(
            corrupt(&set_record(b"s", 3, 1, &[b"a"]), 1),
            "unknown set encoding"
        );
        for enc in [1, 2] {
            assert_eq!(
                corrupt(&set_record(b"s", enc, 2, &[b"a", b"a"]), 1),
                "duplicate set member"
            );
        }
        assert_eq!(
            corrupt(&set_record(b"s", 0, 2, &[b"2", b"1"]), 1),
            "intset members out of order"
        );
        assert_eq!(
            corrupt(&set_record(b"s", 0, 2, &[b"1", b"1"]), 1),
            "intset members out of order"
        );
        assert_eq!(
            corrupt(&set_record(b"s", 0, 1, &[b"01"]), 1),
            "intset member that is not an integer"
        );
        assert_eq!(
            corrupt(&set_record(b"s", 0, 513, &ints), 1),
            "intset with more than 512 members"
        );
        assert_eq!(
            corrupt(&set_record(b"s", 1, 1, &[&long]), 1),
            "listpack set member longer than 64 bytes"
        );
        assert_eq!(
            corrupt(&set_record(b"s", 1, 129, &many), 1),
            "listpack set with more than 128 members"
        );
        // The same members are fine as a table.
        assert!(decode(&seal(3, &set_record(b"s", 2, 129, &many), 1, 5)).is_ok());
        assert!(decode(&seal(3, &set_record(b"s", 2, 513, &ints), 1, 5)).is_ok());
        // A count that claims more members than follow: an error, no panic.
        assert!(decode(&seal(3, &set_record(b"s", 2, 1 << 40, &[b"a"]), 1, 5)).is_err());
    }

    #[test]
    fn hash_records_that_break_the_rules_are_corrupt() {
        let long = [b'x'; 65];
        let many: Vec<Vec<u8>> = (0..129).map(|i| format!("f{i}").into_bytes()).collect();
        let many: Vec<(&[u8], &[u8])> = many.iter().map(|f| (f.as_slice(), &b"v"[..])).collect();
        assert_eq!(corrupt(&hash_record(b"h", 0, 0, &[]), 1), "empty hash");
        assert_eq!(corrupt(&hash_record(b"h", 1, 0, &[]), 1), "empty hash");
        assert_eq!(
            corrupt(&hash_record(b"h", 2, 1, &[(b"f", b"v")]), 1),
            "unknown hash encoding"
        );
        for enc in [0, 1] {
            assert_eq!(
                corrupt(&hash_record(b"h", enc, 2, &[(b"f", b"v"), (b"f", b"w")]), 1),
                "duplicate hash field"
            );
        }
        assert_eq!(
            corrupt(&hash_record(b"h", 0, 1, &[(b"f", &long)]), 1),
            "listpack hash pair longer than 64 bytes"
        );
        assert_eq!(
            corrupt(&hash_record(b"h", 0, 129, &many), 1),
            "listpack hash with more than 128 pairs"
        );
        // The same pairs are fine as a table.
        assert!(decode(&seal(3, &hash_record(b"h", 1, 129, &many), 1, 5)).is_ok());
        // A count that claims more pairs than follow: an error, no panic.
        assert!(decode(&seal(
            3,
            &hash_record(b"h", 1, 1 << 40, &[(b"f", b"v")]),
            1,
            5
        ))
        .is_err());
        let mut dup = hash_record(b"h", 0, 1, &[(b"f", b"v")]);
        dup.extend(entry(tag::INT, b"h", 0, &1i64.to_le_bytes()));
        assert_eq!(corrupt(&dup, 2), "duplicate key");
    }

    #[test]
    fn sealed_records_decode_to_their_values() {
        let mut records = entry(tag::INT, b"n", 7, &(-42i64).to_le_bytes());
        records.extend(entry(tag::INLINE, b"", 0, &string(b"012")));
        records.extend(entry(tag::HEAP, b"h", 0, &string(b"5")));
        records.extend(entry(tag::GROWABLE, b"g", 0, &string(b"")));
        records.extend(deadline(2, 99));
        let (mut ks, info) = decode(&seal(3, &records, 4, 5)).expect("valid");
        assert_eq!(info.keys, 4);
        assert_eq!(ks.rng_state(), 3);
        let entries: Vec<_> = ks
            .stored_entries()
            .map(|(_, v, m)| (v.clone(), m))
            .collect();
        assert_eq!(entries[0], (Value::Int(-42), 7));
        assert_eq!(entries[1].0.encoding(), "embstr");
        assert_eq!(entries[2].0, Value::Heap(b"5"[..].into()));
        assert_eq!(entries[3].0, Value::Growable(Box::default()));
        assert_eq!(ks.deadline(b"h", 0), Some(Some(99)));
    }

    fn lock_record(
        name: &[u8],
        holder: Option<(&[u8], u64, u64)>,
        waiters: &[(&[u8], u64)],
    ) -> Vec<u8> {
        let mut out = vec![tag::LOCK];
        out.extend(string(name));
        match holder {
            None => out.push(0),
            Some((owner, token, lease)) => {
                out.push(1);
                out.extend(string(owner));
                out.extend_from_slice(&token.to_le_bytes());
                out.extend_from_slice(&lease.to_le_bytes());
            }
        }
        out.extend_from_slice(varint(waiters.len() as u64).as_slice());
        for (owner, lease) in waiters {
            out.extend(string(owner));
            out.extend_from_slice(&lease.to_le_bytes());
        }
        out
    }

    fn seal_v1(records: &[u8], keys: u64) -> Vec<u8> {
        seal_version(1, 3, records, keys, 64)
    }

    #[test]
    fn locks_round_trip_in_name_order_and_version_1_loads_without_them() {
        use crate::locks::Acquired;
        let mut ks = sample_keyspace(20);
        ks.locks.set_stamp(7, 0);
        for name in [&b"zeta"[..], b"alpha", b"mid"] {
            let r = ks.locks.acquire(name, b"owner-1", 1500, false, 0);
            assert_eq!(r, Ok(Acquired::Granted(7 << 16)));
        }
        for chunk_len in [1, 5, CHUNK_LEN] {
            let bytes = encode(&ks, chunk_len);
            let (mut restored, _) = decode(&bytes).expect("valid snapshot");
            assert_restored(&ks, &restored);
            let mut names: Vec<Vec<u8>> = restored.locks.iter().map(|(n, _)| n.to_vec()).collect();
            names.sort();
            assert_eq!(
                names,
                vec![b"alpha".to_vec(), b"mid".to_vec(), b"zeta".to_vec()]
            );
            // No lease runs until the host starts them (this node's clock).
            assert_eq!(restored.locks.info(b"mid", 0).unwrap().remaining_ms, None);
            restored.locks.start_leases(1_000_000);
            let i = restored.locks.info(b"mid", 1_000_000).unwrap();
            assert_eq!(
                (&*i.owner, i.token, i.remaining_ms),
                (&b"owner-1"[..], 7 << 16, Some(1500))
            );
        }
        // Same content, same bytes (replicas compare snapshots).
        assert_eq!(encode(&ks, CHUNK_LEN), encode(&ks, CHUNK_LEN));
        let one = entry(tag::INT, b"k", 0, &1i64.to_le_bytes());
        let (old, _) = decode(&seal_v1(&one, 1)).expect("version 1 loads");
        assert_eq!(old.len(), 1);
        assert!(old.locks.is_empty());
        let lock = lock_record(b"l", Some((b"o", 1, 10)), &[]);
        assert!(matches!(
            decode(&seal_v1(&lock, 0)),
            Err(SnapshotError::Corrupt("unknown record tag"))
        ));
    }

    #[test]
    fn lock_records_that_break_the_rules_are_corrupt() {
        // Version 3 records (one permit, a holder flag) still load.
        let v3 = |records: &[u8]| decode(&seal_version(3, 3, records, 0, 5));
        let corrupt_v3 = |records: &[u8]| match v3(records) {
            Err(SnapshotError::Corrupt(why)) => why,
            other => panic!("{:?}", other.map(|(_, info)| info)),
        };
        let ok = lock_record(b"l", Some((b"o", 1, 10)), &[(b"w", 20)]);
        let (mut ks, _) = v3(&ok).expect("valid");
        assert_eq!(ks.locks.len(), 1);
        assert_eq!(
            ks.locks
                .sem_info(b"l", 0)
                .map(|i| (i.limit, i.used, i.waiters)),
            Some((1, 1, 1))
        );
        let twice = [ok.clone(), ok.clone()].concat();
        assert_eq!(corrupt_v3(&twice), "duplicate lock");
        let free = lock_record(b"l", None, &[(b"w", 20)]);
        assert_eq!(corrupt_v3(&free), "a free lock in the snapshot");
        let no_owner = lock_record(b"l", Some((b"", 1, 10)), &[]);
        assert_eq!(corrupt_v3(&no_owner), "lock owner length out of range");
        let long_owner = lock_record(b"l", Some((&[b'o'; 257], 1, 10)), &[]);
        assert_eq!(corrupt_v3(&long_owner), "lock owner length out of range");
        let no_lease = lock_record(b"l", Some((b"o", 1, 0)), &[]);
        assert_eq!(corrupt_v3(&no_lease), "lock lease out of range");
        let mut flag = lock_record(b"l", None, &[]);
        flag[3] = 2;
        assert_eq!(corrupt_v3(&flag), "lock holder flag is not 0 or 1");
        let mut many = vec![tag::LOCK];
        many.extend(string(b"l"));
        many.push(1);
        many.extend(string(b"o"));
        many.extend_from_slice(&1u64.to_le_bytes());
        many.extend_from_slice(&10u64.to_le_bytes());
        many.extend_from_slice(varint(crate::locks::WAITERS_MAX as u64 + 1).as_slice());
        assert_eq!(corrupt_v3(&many), "more lock waiters than allowed");
        // Version 4: semaphores.
        let ok = sem_record(
            b"s",
            3,
            &[(b"a", 1, 10, 2), (b"b", 2, 10, 1)],
            &[(b"w", 20, 2)],
        );
        let (mut ks, _) = decode(&seal(3, &ok, 0, 5)).expect("valid");
        let i = ks.locks.sem_info(b"s", 0).expect("restored");
        assert_eq!((i.limit, i.used, i.holders.len(), i.waiters), (3, 3, 2, 1));
        // Version 5 carries each holder's renewal stamp; version 4 records
        // load with the grant's token there.
        let renewed = |ks: &Keyspace| -> Vec<(u64, u64)> {
            let mut v: Vec<(u64, u64)> = ks
                .locks
                .iter()
                .flat_map(|(_, l)| l.holders.iter().map(|h| (h.token, h.renewed)))
                .collect();
            v.sort();
            v
        };
        assert_eq!(renewed(&ks), [(1, 8), (2, 9)]);
        let v4 = sem_record_v(
            4,
            b"s",
            3,
            &[(b"a", 1, 10, 2), (b"b", 2, 10, 1)],
            &[(b"w", 20, 2)],
        );
        let (ks4, _) = decode(&seal_version(4, 3, &v4, 0, 5)).expect("valid v4");
        assert_eq!(renewed(&ks4), [(1, 1), (2, 2)]);
        for (bad, why) in [
            (
                sem_record(b"s", 0, &[(b"a", 1, 10, 1)], &[]),
                "lock permits out of range",
            ),
            (
                sem_record(b"s", 2, &[(b"a", 1, 10, 3)], &[]),
                "permits out of range",
            ),
            (
                sem_record(b"s", 2, &[(b"a", 1, 10, 0)], &[]),
                "permits out of range",
            ),
            (
                sem_record(b"s", 1, &[(b"a", 1, 10, 1), (b"b", 1, 10, 1)], &[]),
                "more lock holders than permits",
            ),
            (
                sem_record(b"s", 3, &[(b"a", 1, 10, 2), (b"b", 1, 10, 2)], &[]),
                "more permits held than the lock has",
            ),
            (
                sem_record(b"s", 3, &[(b"a", 1, 10, 1), (b"a", 1, 10, 1)], &[]),
                "a lock holder twice",
            ),
            (
                sem_record(b"s", 3, &[(b"a", 1, 10, 1)], &[(b"w", 10, 2)]),
                "a lock waiter that fits",
            ),
            (
                sem_record(b"s", 3, &[], &[(b"w", 10, 2)]),
                "a free lock in the snapshot",
            ),
        ] {
            assert_eq!(corrupt(&bad, 0), why);
        }
    }

    /// A version 5 lock record; each holder's `renewed` is its token + 7.
    fn sem_record(
        name: &[u8],
        limit: u64,
        holders: &[(&[u8], u64, u64, u64)],
        waiters: &[(&[u8], u64, u64)],
    ) -> Vec<u8> {
        sem_record_v(5, name, limit, holders, waiters)
    }

    fn sem_record_v(
        version: u8,
        name: &[u8],
        limit: u64,
        holders: &[(&[u8], u64, u64, u64)],
        waiters: &[(&[u8], u64, u64)],
    ) -> Vec<u8> {
        let mut out = vec![tag::LOCK];
        out.extend(string(name));
        out.extend_from_slice(varint(limit).as_slice());
        out.extend_from_slice(varint(holders.len() as u64).as_slice());
        for (owner, token, lease, permits) in holders {
            out.extend(string(owner));
            out.extend_from_slice(&token.to_le_bytes());
            out.extend_from_slice(&lease.to_le_bytes());
            out.extend_from_slice(varint(*permits).as_slice());
            if version >= 5 {
                out.extend_from_slice(&(token + 7).to_le_bytes());
            }
        }
        out.extend_from_slice(varint(waiters.len() as u64).as_slice());
        for (owner, lease, permits) in waiters {
            out.extend(string(owner));
            out.extend_from_slice(&lease.to_le_bytes());
            out.extend_from_slice(varint(*permits).as_slice());
        }
        out
    }

    #[test]
    fn records_that_break_the_format_are_corrupt() {
        let one = entry(tag::INT, b"k", 0, &1i64.to_le_bytes());
        let twice = [one.clone(), one.clone()].concat();
        assert_eq!(corrupt(&twice, 2), "duplicate key");
        assert_eq!(
            corrupt(&one, 2),
            "trailer key count differs from the records"
        );
        let missing = [one.clone(), deadline(1, 5)].concat();
        assert!(corrupt(&missing, 1).starts_with("deadline for a missing key"));
        let double = [one.clone(), deadline(0, 5), deadline(0, 6)].concat();
        assert!(corrupt(&double, 1).starts_with("deadline for a missing key"));
        let long = entry(tag::INLINE, b"k", 0, &string(&[b'x'; 23]));
        assert_eq!(corrupt(&long, 1), "inline string longer than 22 bytes");
        assert_eq!(corrupt(&[0x7f], 0), "unknown record tag");
        assert_eq!(
            corrupt(&one[..one.len() - 1], 1),
            "a record runs past the last chunk"
        );
        let overlong = [tag::INT, 0x81, 0x00];
        assert_eq!(corrupt(&overlong, 1), "varint is not minimally encoded");
        let overflow = [&[tag::INT][..], &[0xff; 9], &[0x02]].concat();
        assert_eq!(corrupt(&overflow, 1), "varint overflows 64 bits");
        let huge_pos = [&[tag::DEADLINE][..], &[0xff; 9], &[0x01], &[0; 8]].concat();
        assert!(corrupt(&[one, huge_pos].concat(), 1).starts_with("deadline"));
    }

    // ---- bounded memory ----

    /// Records the largest single allocation made by this thread while
    /// `largest_allocation` runs `f` (tests run on several threads).
    mod probe {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
        }

        pub struct Probe;

        fn note(size: usize) {
            let _ = LARGEST.try_with(|c| {
                if let Some(m) = c.get() {
                    c.set(Some(m.max(size)));
                }
            });
        }

        unsafe impl GlobalAlloc for Probe {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                // SAFETY: forwarded unchanged to the system allocator.
                unsafe { System.alloc(layout) }
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                note(layout.size());
                // SAFETY: forwarded unchanged to the system allocator.
                unsafe { System.alloc_zeroed(layout) }
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                note(new_size);
                // SAFETY: forwarded unchanged to the system allocator.
                unsafe { System.realloc(ptr, layout, new_size) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: forwarded unchanged to the system allocator.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
            LARGEST.with(|c| c.set(Some(0)));
            let r = f();
            let largest = LARGEST.with(|c| c.take()).unwrap_or(0);
            (r, largest)
        }
    }

    #[global_allocator]
    static PROBE: probe::Probe = probe::Probe;

    fn decode_measured(bytes: &[u8]) -> (Result<(Keyspace, SnapshotInfo), SnapshotError>, usize) {
        probe::largest_allocation(|| decode(bytes))
    }

    /// A header, then one chunk header claiming `len` bytes, then `tail`.
    fn claimed_chunk(len: u32, tail: &[u8]) -> Vec<u8> {
        let mut out = seal(1, b"", 0, 1);
        out.truncate(HEADER_LEN);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(tail);
        out
    }

    #[test]
    fn probe_sees_large_allocations() {
        let (v, largest) = probe::largest_allocation(|| vec![0u8; 3 << 20]);
        assert_eq!(v.len(), 3 << 20);
        assert!(largest >= 3 << 20);
    }

    #[test]
    fn chunk_over_the_limit_is_refused_before_allocating() {
        let bytes = claimed_chunk(CHUNK_LEN_MAX as u32 + 1, &[0; 100]);
        let (r, largest) = decode_measured(&bytes);
        assert!(matches!(
            r,
            Err(SnapshotError::TooLarge { what: "chunk", .. })
        ));
        assert!(largest < 64 * 1024, "allocated {largest} bytes");
    }

    #[test]
    fn chunk_claiming_more_than_it_holds_allocates_only_one_read_step() {
        let bytes = claimed_chunk(CHUNK_LEN_MAX as u32, &[0; 100]);
        let (r, largest) = decode_measured(&bytes);
        assert!(matches!(r, Err(SnapshotError::Truncated)));
        assert!(largest <= READ_STEP, "allocated {largest} bytes");
    }

    #[test]
    fn lengths_over_the_limit_are_refused() {
        let over = varint(BULK_LEN_MAX as u64 + 1);
        let key = [&[tag::HEAP][..], over.as_slice()].concat();
        let (r, largest) = decode_measured(&seal(1, &key, 1, 64));
        assert!(matches!(
            r,
            Err(SnapshotError::TooLarge { what: "key", .. })
        ));
        assert!(largest < 64 * 1024, "allocated {largest} bytes");
        let value = entry(tag::HEAP, b"k", 0, over.as_slice());
        let (r, _) = decode_measured(&seal(1, &value, 1, 64));
        assert!(matches!(
            r,
            Err(SnapshotError::TooLarge { what: "value", .. })
        ));
    }

    #[test]
    fn lengths_claiming_more_than_the_records_hold_allocate_only_what_arrived() {
        let claim = varint(BULK_LEN_MAX as u64);
        let key = [&[tag::HEAP][..], claim.as_slice(), &[b'k'; 4000]].concat();
        let (r, largest) = decode_measured(&seal(1, &key, 1, 64));
        assert!(matches!(r, Err(SnapshotError::Corrupt(_))));
        assert!(largest < 64 * 1024, "allocated {largest} bytes");
        let value = [
            entry(tag::HEAP, b"k", 0, claim.as_slice()),
            vec![b'v'; 4000],
        ]
        .concat();
        let (r, largest) = decode_measured(&seal(1, &value, 1, 64));
        assert!(matches!(r, Err(SnapshotError::Corrupt(_))));
        assert!(largest < 64 * 1024, "allocated {largest} bytes");
    }

    // ---- throughput ----

    /// `cargo test --release -p cairn-engine --lib snapshot::tests::throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement; run in release"]
    fn throughput_1m_keys_of_16_byte_values() {
        use std::time::Instant;
        const KEYS: usize = 1_000_000;
        let records: Vec<_> = (0..KEYS)
            .map(|i| {
                let key = format!("key:{i:012}");
                let value = Value::from_bytes(format!("value-{i:010}").as_bytes());
                let deadline = (i % 4 == 0).then_some(1_700_000_000_000 + i as u64);
                (key, value, deadline)
            })
            .collect();
        let mut ks = Keyspace::new(SEED);
        let runs = 5;
        // Reference: building the same keyspace with `insert`.
        let mut insert_s = f64::MAX;
        for _ in 0..runs {
            ks = Keyspace::new(SEED);
            let t = Instant::now();
            for (key, value, deadline) in &records {
                ks.insert(key.as_bytes(), value.clone(), Some(*deadline), 0);
            }
            insert_s = insert_s.min(t.elapsed().as_secs_f64());
        }
        let mut out = Vec::with_capacity(64 << 20);
        let (mut write_s, mut read_s) = (f64::MAX, f64::MAX);
        for _ in 0..runs {
            out.clear();
            let t = Instant::now();
            write(&ks, &mut out).expect("write");
            write_s = write_s.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let (restored, info) = read(&mut &out[..], SEED).expect("read");
            read_s = read_s.min(t.elapsed().as_secs_f64());
            assert_eq!(info.keys, KEYS as u64);
            assert_eq!(restored.digest(), ks.digest());
        }
        let t = Instant::now();
        let crc = CRC32C.checksum(&out);
        let crc_s = t.elapsed().as_secs_f64();
        let mb = out.len() as f64 / 1e6;
        println!(
            "{KEYS} keys, {mb:.1} MB ({:.1} B/key); best of {runs}: \
             write {:.0} ms = {:.0} MB/s, {:.2} M keys/s; \
             read {:.0} ms = {:.0} MB/s, {:.2} M keys/s; crc32c alone {:.0} MB/s ({crc:x}); \
             reference: insert {:.0} ms = {:.2} M keys/s, read / insert = {:.2}",
            out.len() as f64 / KEYS as f64,
            write_s * 1e3,
            mb / write_s,
            KEYS as f64 / write_s / 1e6,
            read_s * 1e3,
            mb / read_s,
            KEYS as f64 / read_s / 1e6,
            mb / crc_s,
            insert_s * 1e3,
            KEYS as f64 / insert_s / 1e6,
            read_s / insert_s,
        );
    }
}
#[cfg(test)]
mod fuzz_seeds {
    /// The committed seeds of the `snapshot` fuzz target (mode byte 0 +
    /// a whole snapshot stream) must stay valid snapshots, or the fuzzer
    /// starts from garbage after a format change.
    #[test]
    fn committed_fuzz_seeds_are_valid_snapshots() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/snapshot");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fuzz/seeds/snapshot exists") {
            let bytes = std::fs::read(entry.expect("dir entry").path()).expect("readable seed");
            assert_eq!(bytes.first(), Some(&0), "mode byte: whole stream");
            let (ks, info) = super::read(&mut &bytes[1..], 1).expect("seed decodes");
            assert_eq!(info.bytes as usize, bytes.len() - 1);
            assert_eq!(info.keys, ks.len() as u64);
            n += 1;
        }
        assert!(n >= 2, "seeds present");
    }
}
