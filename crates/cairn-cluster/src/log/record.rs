//! The bytes on disk: segment headers and records. Pure encode/decode, no
//! I/O, so the decoder can be fuzzed on its own.
//!
//! ```text
//! segment  = header record*
//! header   = magic "CAIRNLOG" | version u8 | 0 u8 x3 | seq u64 LE | crc32c u32 LE
//!            (crc over the 20 bytes before it)
//! record   = len u32 LE | crc32c u32 LE | kind u8 | group u16 LE | payload
//!            len counts kind .. payload; crc covers kind .. payload
//! kind     = low 7 bits: 1 Entries, 2 Truncate, 3 Purge, 4 Meta, 5 Checkpoint
//!            bit 7 (BATCH_START): set on the first record of every write
//!            that the writer follows with an fsync
//! payloads:
//!   Entries    first u64 | count u32 (>= 1) | (len u32 | bytes) x count
//!              indices first, first + 1, ..., first + count - 1
//!   Truncate   from u64
//!   Purge      upto u64 | id (rest of payload)
//!   Meta       key u8 (0 vote, 1 committed) | value (rest of payload)
//!   Checkpoint has u8 (bit 0 vote, bit 1 committed, bit 2 purged)
//!              | [len u32 | vote] | [len u32 | committed] | [upto u64 | len u32 | id]
//! ```
//!
//! The one thing not to get wrong: a length read from disk is checked
//! against [`RECORD_LEN_MAX`] and against the bytes actually present
//! before anything is sliced or allocated. Every encoding is canonical
//! (no trailing bytes, no unknown flag bits), so a decoded record
//! re-encodes to exactly the bytes it came from.

use crc::{Crc, Table, CRC_32_ISCSI};

use super::MetaKey;

/// Format version in every segment header; bump on any change above.
pub const SEGMENT_VERSION: u8 = 1;
pub const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNLOG";
pub const SEGMENT_HEADER_LEN: usize = 24;
/// `len` + `crc`.
pub const RECORD_HEADER_LEN: usize = 8;
/// `kind` + `group`: the part of `len` that is not payload.
const BODY_FIXED_LEN: usize = 3;
/// Largest payload of one record. An append bigger than this is split
/// over several Entries records; a single entry must fit in one.
pub const PAYLOAD_LEN_MAX: usize = 64 << 20;
/// Largest value of a record's `len` field; anything above is refused
/// before allocating.
pub const RECORD_LEN_MAX: usize = BODY_FIXED_LEN + PAYLOAD_LEN_MAX;
/// Entries payload: `first` + `count`, then `len` per entry.
const ENTRIES_FIXED_LEN: usize = 8 + 4;
const ENTRY_OVERHEAD_LEN: usize = 4;
/// Largest single entry.
pub const ENTRY_LEN_MAX: usize = PAYLOAD_LEN_MAX - ENTRIES_FIXED_LEN - ENTRY_OVERHEAD_LEN;
/// Largest vote, committed value or purge id. These are restated in every
/// checkpoint, so they must stay small.
pub const VALUE_LEN_MAX: usize = 64 << 10;

const BATCH_START: u8 = 0x80;
const KIND_ENTRIES: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_PURGE: u8 = 3;
const KIND_META: u8 = 4;
const KIND_CHECKPOINT: u8 = 5;

const HAS_VOTE: u8 = 1;
const HAS_COMMITTED: u8 = 2;
const HAS_PURGED: u8 = 4;

pub(crate) static CRC32C: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// One decoded record; slices borrow from the decoded buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub group: u16,
    /// First record of a write that was followed by an fsync.
    pub batch_start: bool,
    pub body: Body<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Entries { first: u64, entries: Vec<&'a [u8]> },
    Truncate { from: u64 },
    Purge { upto: u64, id: &'a [u8] },
    Meta { key: MetaKey, value: &'a [u8] },
    Checkpoint(Checkpoint<'a>),
}

/// A group's metadata restated at the head of a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub vote: Option<&'a [u8]>,
    pub committed: Option<&'a [u8]>,
    pub purged: Option<(u64, &'a [u8])>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record needs {need} bytes, only {have} present")]
    Truncated { need: usize, have: usize },
    #[error("record length {len} exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("record length {0} is shorter than its fixed fields")]
    TooShort(usize),
    #[error("record checksum mismatch")]
    Checksum,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("malformed {kind} record: {what}")]
    Malformed {
        kind: &'static str,
        what: &'static str,
    },
}

impl RecordError {
    /// True when the checksum matched, so the bytes are what was written:
    /// a bug or another format, never a torn write.
    pub fn checksum_verified(&self) -> bool {
        matches!(
            self,
            RecordError::UnknownKind(_) | RecordError::Malformed { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("segment header needs {SEGMENT_HEADER_LEN} bytes, only {0} present")]
    Short(usize),
    #[error("not a cairn log segment (bad magic)")]
    Magic,
    #[error("unsupported log format version {0} (this build reads {SEGMENT_VERSION})")]
    Version(u8),
    #[error("segment header checksum mismatch")]
    Checksum,
}

pub fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8] = SEGMENT_VERSION;
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = CRC32C.checksum(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header and returns the sequence number it holds.
pub fn decode_segment_header(buf: &[u8]) -> Result<u64, HeaderError> {
    let h = buf
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(HeaderError::Short(buf.len()))?;
    if h[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Magic);
    }
    // Version before checksum: a newer format should say so, not "corrupt".
    if h[8] != SEGMENT_VERSION {
        return Err(HeaderError::Version(h[8]));
    }
    if CRC32C.checksum(&h[..20]) != u32_at(h, 20) || h[9..12] != [0, 0, 0] {
        return Err(HeaderError::Checksum);
    }
    Ok(u64_at(h, 12))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Starts a record at the end of `out`; returns where it starts, for
/// [`finish`]. The caller keeps the payload within [`PAYLOAD_LEN_MAX`].
fn begin(out: &mut Vec<u8>, kind: u8, group: u16, batch_start: bool) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    out.push(kind | if batch_start { BATCH_START } else { 0 });
    out.extend_from_slice(&group.to_le_bytes());
    start
}

fn finish(out: &mut [u8], start: usize) {
    let body = &out[start + RECORD_HEADER_LEN..];
    debug_assert!(body.len() <= RECORD_LEN_MAX, "record over the limit");
    let len = body.len() as u32;
    let crc = CRC32C.checksum(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Payload bytes an Entries record of these entry lengths needs.
pub fn entries_payload_len(entry_lens: impl IntoIterator<Item = usize>) -> usize {
    ENTRIES_FIXED_LEN
        + entry_lens
            .into_iter()
            .map(|l| l + ENTRY_OVERHEAD_LEN)
            .sum::<usize>()
}

/// The payload bytes one more entry of `len` adds to an Entries record.
pub fn entry_cost(len: usize) -> usize {
    len + ENTRY_OVERHEAD_LEN
}

/// Encodes an Entries record. `entries` must be non-empty and their
/// payload (see [`entries_payload_len`]) within [`PAYLOAD_LEN_MAX`].
pub fn put_entries<'e>(
    out: &mut Vec<u8>,
    group: u16,
    batch_start: bool,
    first: u64,
    entries: impl ExactSizeIterator<Item = &'e [u8]>,
) {
    debug_assert!(entries.len() > 0);
    let start = begin(out, KIND_ENTRIES, group, batch_start);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        put_bytes(out, e);
    }
    finish(out, start);
}

pub fn put_truncate(out: &mut Vec<u8>, group: u16, batch_start: bool, from: u64) {
    let start = begin(out, KIND_TRUNCATE, group, batch_start);
    out.extend_from_slice(&from.to_le_bytes());
    finish(out, start);
}

pub fn put_purge(out: &mut Vec<u8>, group: u16, batch_start: bool, upto: u64, id: &[u8]) {
    let start = begin(out, KIND_PURGE, group, batch_start);
    out.extend_from_slice(&upto.to_le_bytes());
    out.extend_from_slice(id);
    finish(out, start);
}

pub fn put_meta(out: &mut Vec<u8>, group: u16, batch_start: bool, key: MetaKey, value: &[u8]) {
    let start = begin(out, KIND_META, group, batch_start);
    out.push(match key {
        MetaKey::Vote => 0,
        MetaKey::Committed => 1,
    });
    out.extend_from_slice(value);
    finish(out, start);
}

pub fn put_checkpoint(out: &mut Vec<u8>, group: u16, batch_start: bool, cp: &Checkpoint<'_>) {
    let start = begin(out, KIND_CHECKPOINT, group, batch_start);
    let has = cp.vote.map_or(0, |_| HAS_VOTE)
        | cp.committed.map_or(0, |_| HAS_COMMITTED)
        | cp.purged.map_or(0, |_| HAS_PURGED);
    out.push(has);
    if let Some(v) = cp.vote {
        put_bytes(out, v);
    }
    if let Some(c) = cp.committed {
        put_bytes(out, c);
    }
    if let Some((upto, id)) = cp.purged {
        out.extend_from_slice(&upto.to_le_bytes());
        put_bytes(out, id);
    }
    finish(out, start);
}

/// Appends the encoding of `rec` to `out` (used by tests and the fuzzer;
/// the writer calls the `put_*` helpers directly).
pub fn encode_record(out: &mut Vec<u8>, rec: &Record<'_>) {
    let (g, b) = (rec.group, rec.batch_start);
    match &rec.body {
        Body::Entries { first, entries } => {
            put_entries(out, g, b, *first, entries.iter().copied());
        }
        Body::Truncate { from } => put_truncate(out, g, b, *from),
        Body::Purge { upto, id } => put_purge(out, g, b, *upto, id),
        Body::Meta { key, value } => put_meta(out, g, b, *key, value),
        Body::Checkpoint(cp) => put_checkpoint(out, g, b, cp),
    }
}

/// Decodes the record at the front of `buf`; returns it and the bytes it
/// used. Never panics and allocates at most one pointer per 4 bytes of
/// checksummed input.
pub fn decode_record(buf: &[u8]) -> Result<(Record<'_>, usize), RecordError> {
    let head = buf.get(..RECORD_HEADER_LEN).ok_or(RecordError::Truncated {
        need: RECORD_HEADER_LEN,
        have: buf.len(),
    })?;
    let len = u32_at(head, 0) as usize;
    if len > RECORD_LEN_MAX {
        return Err(RecordError::TooLong {
            len,
            max: RECORD_LEN_MAX,
        });
    }
    if len < BODY_FIXED_LEN {
        return Err(RecordError::TooShort(len));
    }
    let used = RECORD_HEADER_LEN + len;
    let body = buf
        .get(RECORD_HEADER_LEN..used)
        .ok_or(RecordError::Truncated {
            need: used,
            have: buf.len(),
        })?;
    if CRC32C.checksum(body) != u32_at(head, 4) {
        return Err(RecordError::Checksum);
    }
    let kind = body[0] & !BATCH_START;
    let rec = Record {
        group: u16::from_le_bytes([body[1], body[2]]),
        batch_start: body[0] & BATCH_START != 0,
        body: decode_body(kind, &body[BODY_FIXED_LEN..])?,
    };
    Ok((rec, used))
}

fn decode_body(kind: u8, payload: &[u8]) -> Result<Body<'_>, RecordError> {
    let name = match kind {
        KIND_ENTRIES => "entries",
        KIND_TRUNCATE => "truncate",
        KIND_PURGE => "purge",
        KIND_META => "meta",
        KIND_CHECKPOINT => "checkpoint",
        _ => return Err(RecordError::UnknownKind(kind)),
    };
    let mut c = Cursor {
        rest: payload,
        kind: name,
    };
    let body = match kind {
        KIND_ENTRIES => decode_entries(&mut c)?,
        KIND_TRUNCATE => Body::Truncate { from: c.u64()? },
        KIND_PURGE => Body::Purge {
            upto: c.u64()?,
            id: c.rest(),
        },
        KIND_META => {
            let key = match c.u8()? {
                0 => MetaKey::Vote,
                1 => MetaKey::Committed,
                _ => return Err(c.bad("unknown meta key")),
            };
            Body::Meta {
                key,
                value: c.rest(),
            }
        }
        _ => decode_checkpoint(&mut c)?,
    };
    c.end()?;
    Ok(body)
}

fn decode_entries<'a>(c: &mut Cursor<'a>) -> Result<Body<'a>, RecordError> {
    let first = c.u64()?;
    let count = c.u32()? as usize;
    if count == 0 {
        return Err(c.bad("no entries"));
    }
    // Each entry takes at least its 4-byte length: bound the allocation
    // by the bytes present, not by the count read from disk.
    if count > c.rest.len() / ENTRY_OVERHEAD_LEN {
        return Err(c.bad("count exceeds the payload"));
    }
    if first.checked_add(count as u64 - 1).is_none() {
        return Err(c.bad("indices overflow u64"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        entries.push(c.bytes()?);
    }
    Ok(Body::Entries { first, entries })
}

fn decode_checkpoint<'a>(c: &mut Cursor<'a>) -> Result<Body<'a>, RecordError> {
    let has = c.u8()?;
    if has & !(HAS_VOTE | HAS_COMMITTED | HAS_PURGED) != 0 {
        return Err(c.bad("unknown flags"));
    }
    let mut cp = Checkpoint::default();
    if has & HAS_VOTE != 0 {
        cp.vote = Some(c.bytes()?);
    }
    if has & HAS_COMMITTED != 0 {
        cp.committed = Some(c.bytes()?);
    }
    if has & HAS_PURGED != 0 {
        cp.purged = Some((c.u64()?, c.bytes()?));
    }
    Ok(Body::Checkpoint(cp))
}

/// A bounds-checked reader over one payload.
struct Cursor<'a> {
    rest: &'a [u8],
    kind: &'static str,
}

impl<'a> Cursor<'a> {
    fn bad(&self, what: &'static str) -> RecordError {
        RecordError::Malformed {
            kind: self.kind,
            what,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if n > self.rest.len() {
            return Err(self.bad("field runs past the payload"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32_at(self.take(4)?, 0))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64_at(self.take(8)?, 0))
    }

    /// A `len u32 | bytes` field.
    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    fn end(&self) -> Result<(), RecordError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes"))
        }
    }
}

/// Offset of the first complete, checksum-valid BATCH_START record at or
/// after `from`, scanning byte by byte. Recovery uses it to tell a torn
/// tail (nothing was fsynced after it) from corruption (a later batch
/// exists, so the damaged bytes had been fsynced). `budget_bytes` caps
/// the bytes checksummed; when it runs out the scan answers `Some` —
/// "cannot prove the tail is torn" — so recovery errs on refusing.
pub fn find_batch_start(buf: &[u8], from: usize, mut budget_bytes: usize) -> Option<usize> {
    let last = buf.len().checked_sub(RECORD_HEADER_LEN + BODY_FIXED_LEN)?;
    for at in from..=last {
        let kind = buf[at + RECORD_HEADER_LEN];
        if kind & BATCH_START == 0
            || !(KIND_ENTRIES..=KIND_CHECKPOINT).contains(&(kind & !BATCH_START))
        {
            continue;
        }
        let len = u32_at(buf, at) as usize;
        if !(BODY_FIXED_LEN..=RECORD_LEN_MAX).contains(&len)
            || len > buf.len() - at - RECORD_HEADER_LEN
        {
            continue;
        }
        if len > budget_bytes {
            return Some(at);
        }
        budget_bytes -= len;
        if decode_record(&buf[at..]).is_ok() {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    /// Owned form of a record, so proptest can generate it.
    #[derive(Clone, Debug)]
    enum Owned {
        Entries(u64, Vec<Vec<u8>>),
        Truncate(u64),
        Purge(u64, Vec<u8>),
        Meta(bool, Vec<u8>),
        Checkpoint(Option<Vec<u8>>, Option<Vec<u8>>, Option<(u64, Vec<u8>)>),
    }

    fn arb_owned() -> impl Strategy<Value = Owned> {
        prop_oneof![
            (
                0u64..u64::MAX / 2,
                proptest::collection::vec(arb_bytes(40), 1..5)
            )
                .prop_map(|(f, e)| Owned::Entries(f, e)),
            any::<u64>().prop_map(Owned::Truncate),
            (any::<u64>(), arb_bytes(40)).prop_map(|(u, id)| Owned::Purge(u, id)),
            (any::<bool>(), arb_bytes(40)).prop_map(|(k, v)| Owned::Meta(k, v)),
            (
                proptest::option::of(arb_bytes(20)),
                proptest::option::of(arb_bytes(20)),
                proptest::option::of((any::<u64>(), arb_bytes(20)))
            )
                .prop_map(|(v, c, p)| Owned::Checkpoint(v, c, p)),
        ]
    }

    fn view(o: &Owned, group: u16, batch_start: bool) -> Record<'_> {
        let body = match o {
            Owned::Entries(first, e) => Body::Entries {
                first: *first,
                entries: e.iter().map(|v| &v[..]).collect(),
            },
            Owned::Truncate(from) => Body::Truncate { from: *from },
            Owned::Purge(upto, id) => Body::Purge { upto: *upto, id },
            Owned::Meta(k, value) => Body::Meta {
                key: if *k {
                    MetaKey::Vote
                } else {
                    MetaKey::Committed
                },
                value,
            },
            Owned::Checkpoint(v, c, p) => Body::Checkpoint(Checkpoint {
                vote: v.as_deref(),
                committed: c.as_deref(),
                purged: p.as_ref().map(|(u, id)| (*u, &id[..])),
            }),
        };
        Record {
            group,
            batch_start,
            body,
        }
    }

    proptest! {
        #[test]
        fn records_round_trip_back_to_back(
            recs in proptest::collection::vec((arb_owned(), any::<u16>(), any::<bool>()), 1..6)
        ) {
            let mut buf = Vec::new();
            for (o, g, b) in &recs {
                encode_record(&mut buf, &view(o, *g, *b));
            }
            let mut at = 0;
            for (o, g, b) in &recs {
                let (got, used) = decode_record(&buf[at..]).unwrap();
                prop_assert_eq!(got, view(o, *g, *b));
                at += used;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn every_strict_prefix_is_truncated(o in arb_owned()) {
            let mut buf = Vec::new();
            encode_record(&mut buf, &view(&o, 7, true));
            for cut in 0..buf.len() {
                let r = decode_record(&buf[..cut]);
                prop_assert!(matches!(r, Err(RecordError::Truncated { .. })), "{:?}", r);
            }
        }

        #[test]
        fn any_flipped_bit_after_the_length_is_detected(o in arb_owned(), bit in any::<usize>()) {
            let mut buf = Vec::new();
            encode_record(&mut buf, &view(&o, 7, false));
            let at = 32 + bit % ((buf.len() - 4) * 8);
            buf[at / 8] ^= 1 << (at % 8);
            prop_assert_eq!(decode_record(&buf), Err(RecordError::Checksum));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in arb_bytes(96)) {
            let _ = decode_record(&bytes);
            let _ = decode_segment_header(&bytes);
            let _ = find_batch_start(&bytes, 0, usize::MAX);
        }
    }

    #[test]
    fn oversized_and_undersized_lengths_are_refused_before_allocating() {
        let mut buf = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert_eq!(
            decode_record(&buf),
            Err(RecordError::TooLong {
                len: u32::MAX as usize,
                max: RECORD_LEN_MAX
            })
        );
        buf[..4].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode_record(&buf), Err(RecordError::TooShort(2)));
    }

    /// A valid checksum over a count far larger than the payload must not
    /// reserve memory for the count.
    #[test]
    fn entries_count_is_bounded_by_the_payload() {
        let mut buf = Vec::new();
        put_entries(&mut buf, 1, false, 5, [&b"x"[..]].into_iter());
        // Rewrite the count to u32::MAX and fix the checksum.
        let count_at = RECORD_HEADER_LEN + BODY_FIXED_LEN + 8;
        buf[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        finish(&mut buf, 0);
        assert_eq!(
            decode_record(&buf),
            Err(RecordError::Malformed {
                kind: "entries",
                what: "count exceeds the payload"
            })
        );
    }

    #[test]
    fn unknown_kinds_and_meta_keys_are_named() {
        let mut buf = Vec::new();
        let start = begin(&mut buf, 9, 1, false);
        finish(&mut buf, start);
        assert_eq!(decode_record(&buf), Err(RecordError::UnknownKind(9)));
        assert!(decode_record(&buf).unwrap_err().checksum_verified());

        let mut buf = Vec::new();
        let start = begin(&mut buf, KIND_META, 1, false);
        buf.push(7);
        finish(&mut buf, start);
        assert!(matches!(
            decode_record(&buf),
            Err(RecordError::Malformed { kind: "meta", .. })
        ));
    }

    #[test]
    fn segment_header_round_trips_and_names_its_errors() {
        let h = encode_segment_header(42);
        assert_eq!(decode_segment_header(&h), Ok(42));
        assert_eq!(decode_segment_header(&h[..10]), Err(HeaderError::Short(10)));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Magic));
        let mut bad = h;
        bad[8] = 2;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Version(2)));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Checksum));
    }

    #[test]
    fn batch_start_scan_finds_only_complete_flagged_records() {
        let mut buf = vec![0u8; 5];
        put_truncate(&mut buf, 1, false, 3);
        assert_eq!(find_batch_start(&buf, 0, usize::MAX), None);
        let at = buf.len();
        put_truncate(&mut buf, 1, true, 4);
        assert_eq!(find_batch_start(&buf, 0, usize::MAX), Some(at));
        assert_eq!(find_batch_start(&buf[..buf.len() - 1], 0, usize::MAX), None);
        assert_eq!(
            find_batch_start(&buf, 0, 0),
            Some(at),
            "budget spent means refuse"
        );
    }
}
