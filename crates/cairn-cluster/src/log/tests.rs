//! Store-level tests: recovery against a model, torn and corrupt files,
//! group commit, and the failed state.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::record::{self, RECORD_HEADER_LEN};
use super::segment;
use super::*;

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        ..LogOptions::default()
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Deterministic entry bytes, different for each (group, index, seed).
fn ent(group: u16, index: u64, seed: u8, len: usize) -> (u64, Bytes) {
    let b: Vec<u8> = (0..len)
        .map(|i| (i as u64 ^ index ^ u64::from(group) << 3) as u8 ^ seed)
        .collect();
    (index, Bytes::from(b))
}

fn append_wait(s: &LogStore, group: u16, entries: Vec<(u64, Bytes)>) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    s.append(
        group,
        entries,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    segment::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().unwrap()
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

/// The recovery semantics, written as plainly as possible.
#[derive(Default, Clone, Debug)]
struct Model {
    groups: BTreeMap<u16, ModelGroup>,
}

#[derive(Default, Clone, Debug)]
struct ModelGroup {
    vote: Option<Bytes>,
    committed: Option<Bytes>,
    purged: Option<(u64, Bytes)>,
    entries: BTreeMap<u64, Bytes>,
}

impl ModelGroup {
    fn purged_upto(&self) -> Option<u64> {
        self.purged.as_ref().map(|p| p.0)
    }

    /// Index of the last entry, else of the purge point, else 0.
    fn last(&self) -> u64 {
        self.entries
            .keys()
            .next_back()
            .copied()
            .or(self.purged_upto())
            .unwrap_or(0)
    }
}

impl Model {
    fn g(&mut self, g: u16) -> &mut ModelGroup {
        self.groups.entry(g).or_default()
    }

    fn append(&mut self, g: u16, entries: &[(u64, Bytes)]) {
        let m = self.g(g);
        m.entries.split_off(&entries[0].0);
        for (i, e) in entries {
            if m.purged_upto().is_none_or(|p| *i > p) {
                m.entries.insert(*i, e.clone());
            }
        }
    }

    fn truncate(&mut self, g: u16, from: u64) {
        self.g(g).entries.split_off(&from);
    }

    fn purge(&mut self, g: u16, upto: u64, id: Bytes) {
        let m = self.g(g);
        if m.purged_upto().is_none_or(|p| upto >= p) {
            m.purged = Some((upto, id));
            m.entries.retain(|i, _| *i > upto);
        }
    }

    fn meta(&mut self, g: u16, key: MetaKey, v: Bytes) {
        let m = self.g(g);
        match key {
            MetaKey::Vote => m.vote = Some(v),
            MetaKey::Committed => m.committed = Some(v),
        }
    }

    fn expected(&self) -> Recovered {
        let mut r = Recovered::default();
        for (g, m) in &self.groups {
            let empty = m.vote.is_none()
                && m.committed.is_none()
                && m.purged.is_none()
                && m.entries.is_empty();
            if empty {
                continue;
            }
            r.groups.insert(
                *g,
                GroupRecovered {
                    vote: m.vote.clone(),
                    committed: m.committed.clone(),
                    purged: m.purged.clone(),
                    entries: m.entries.iter().map(|(i, e)| (*i, e.clone())).collect(),
                },
            );
        }
        r
    }
}

#[test]
fn round_trip_of_appends_truncate_purge_and_meta_across_groups() {
    let d = tempfile::tempdir().unwrap();
    let (s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec, Recovered::default());
    let mut m = Model::default();
    let mut ops = |g: u16, entries: Vec<(u64, Bytes)>| {
        m.append(g, &entries);
        append_wait(&s, g, entries).unwrap();
    };
    ops(1, (1..=10).map(|i| ent(1, i, 0, 20)).collect());
    ops(2, (1..=4).map(|i| ent(2, i, 0, 0)).collect());
    ops(7, (100..=103).map(|i| ent(7, i, 0, 5)).collect());
    // Overwrite group 1 from 8 on, as a new leader's append would.
    ops(1, (8..=9).map(|i| ent(1, i, 1, 20)).collect());
    s.truncate(2, 3);
    m.truncate(2, 3);
    s.purge(7, 101, Bytes::from_static(b"id-101"));
    m.purge(7, 101, Bytes::from_static(b"id-101"));
    block(s.save_meta(1, MetaKey::Vote, Bytes::from_static(b"vote-1"))).unwrap();
    m.meta(1, MetaKey::Vote, Bytes::from_static(b"vote-1"));
    block(s.save_meta(2, MetaKey::Committed, Bytes::from_static(b"c-2"))).unwrap();
    m.meta(2, MetaKey::Committed, Bytes::from_static(b"c-2"));
    block(s.save_meta(1, MetaKey::Vote, Bytes::from_static(b"vote-2"))).unwrap();
    m.meta(1, MetaKey::Vote, Bytes::from_static(b"vote-2"));
    block(s.sync()).unwrap();
    drop(s);

    let (s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec, m.expected());
    assert_eq!(rec.groups[&1].entries.len(), 9, "1..=9 after the overwrite");
    assert_eq!(rec.groups[&1].entries[7], ent(1, 8, 1, 20));
    assert_eq!(rec.groups[&2].entries.len(), 2);
    assert_eq!(rec.groups[&7].entries[0].0, 102);
    drop(s);
    // A second reopen (metadata now only in checkpoints) changes nothing.
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec, m.expected());
}

#[derive(Clone, Debug)]
enum TestOp {
    Append {
        g: u16,
        back: u64,
        n: u64,
        len: usize,
        seed: u8,
    },
    Truncate {
        g: u16,
        back: u64,
    },
    Purge {
        g: u16,
        ahead: u64,
    },
    Meta {
        g: u16,
        vote: bool,
        v: u8,
    },
    /// `save_meta_lazy`: nobody waits; the next fsync covers it.
    MetaLazy {
        g: u16,
        v: u8,
    },
    Reopen,
}

fn arb_op() -> impl Strategy<Value = TestOp> {
    let g = 0u16..4;
    prop_oneof![
        8 => (g.clone(), 0u64..3, 1u64..6, 0usize..300, any::<u8>())
            .prop_map(|(g, back, n, len, seed)| TestOp::Append { g, back, n, len, seed }),
        1 => (g.clone(), 0u64..4).prop_map(|(g, back)| TestOp::Truncate { g, back }),
        2 => (g.clone(), 0u64..14).prop_map(|(g, ahead)| TestOp::Purge { g, ahead }),
        2 => (g.clone(), any::<bool>(), any::<u8>()).prop_map(|(g, vote, v)| TestOp::Meta { g, vote, v }),
        2 => (g, any::<u8>()).prop_map(|(g, v)| TestOp::MetaLazy { g, v }),
        1 => Just(TestOp::Reopen),
    ]
}

/// Runs `ops` against the store and the model; returns the last store.
fn run_ops(dir: &Path, ops: &[TestOp]) -> Result<(), TestCaseError> {
    let (mut s, rec) = LogStore::open(dir, small_segments()).unwrap();
    prop_assert_eq!(rec, Recovered::default());
    let mut m = Model::default();
    let issued = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    for op in ops {
        match *op {
            TestOp::Append {
                g,
                back,
                n,
                len,
                seed,
            } => {
                let mg = m.g(g);
                let floor = mg.purged_upto().map_or(1, |p| p + 1);
                let first = (mg.last() + 1).saturating_sub(back).max(floor);
                let entries: Vec<_> = (first..first + n).map(|i| ent(g, i, seed, len)).collect();
                m.append(g, &entries);
                issued.fetch_add(1, Ordering::SeqCst);
                let acked = acked.clone();
                s.append(
                    g,
                    entries,
                    Box::new(move |r| {
                        if r.is_ok() {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                    }),
                );
            }
            TestOp::Truncate { g, back } => {
                let from = (m.g(g).last() + 1).saturating_sub(back).max(1);
                m.truncate(g, from);
                s.truncate(g, from);
            }
            TestOp::Purge { g, ahead } => {
                // Sometimes behind the current purge point: ignored.
                let upto = (m.g(g).purged_upto().unwrap_or(0) + ahead).saturating_sub(2);
                let id = Bytes::from(format!("purged-{g}-{upto}"));
                m.purge(g, upto, id.clone());
                s.purge(g, upto, id);
            }
            TestOp::Meta { g, vote, v } => {
                let key = if vote {
                    MetaKey::Vote
                } else {
                    MetaKey::Committed
                };
                let value = Bytes::from(vec![v; usize::from(v % 40)]);
                m.meta(g, key, value.clone());
                block(s.save_meta(g, key, value)).unwrap();
            }
            TestOp::MetaLazy { g, v } => {
                let value = Bytes::from(vec![v; usize::from(v % 40)]);
                m.meta(g, MetaKey::Vote, value.clone());
                s.save_meta_lazy(g, MetaKey::Vote, value);
            }
            TestOp::Reopen => {
                block(s.sync()).unwrap();
                prop_assert_eq!(acked.load(Ordering::SeqCst), issued.load(Ordering::SeqCst));
                drop(s);
                let (s2, rec) = LogStore::open(dir, small_segments()).unwrap();
                prop_assert_eq!(rec, m.expected());
                s = s2;
            }
        }
    }
    block(s.sync()).unwrap();
    prop_assert_eq!(acked.load(Ordering::SeqCst), issued.load(Ordering::SeqCst));
    drop(s);
    let (_s, rec) = LogStore::open(dir, small_segments()).unwrap();
    prop_assert_eq!(rec, m.expected());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// 4 KB segments, so rotation and deletion happen many times per case.
    #[test]
    fn recovered_state_matches_the_model_across_reopens_and_rotations(
        ops in proptest::collection::vec(arb_op(), 1..80)
    ) {
        let d = tempfile::tempdir().unwrap();
        run_ops(d.path(), &ops)?;
    }
}

#[test]
fn purged_segments_are_deleted_and_metadata_survives_them() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), small_segments()).unwrap();
    block(s.save_meta(0, MetaKey::Vote, Bytes::from_static(b"v0"))).unwrap();
    block(s.save_meta(1, MetaKey::Committed, Bytes::from_static(b"c1"))).unwrap();
    for chunk in 0..30u64 {
        for g in 0..3u16 {
            let entries = (chunk * 10 + 1..=chunk * 10 + 10)
                .map(|i| ent(g, i, 0, 100))
                .collect();
            append_wait(&s, g, entries).unwrap();
        }
    }
    let before = segments(d.path()).len();
    assert!(before >= 15, "only {before} segments");
    s.purge(0, 300, Bytes::from_static(b"p0"));
    s.purge(1, 300, Bytes::from_static(b"p1"));
    s.purge(2, 150, Bytes::from_static(b"p2"));
    // Deletion runs after the batch's completions: a second sync is
    // queued behind it.
    block(s.sync()).unwrap();
    block(s.sync()).unwrap();
    let middle = segments(d.path()).len();
    assert!(
        middle < before * 2 / 3 && middle > 2,
        "{before} -> {middle} segments"
    );
    drop(s);

    let (s, rec) = LogStore::open(d.path(), small_segments()).unwrap();
    assert_eq!(rec.groups[&0].vote, Some(Bytes::from_static(b"v0")));
    assert_eq!(
        rec.groups[&0].purged,
        Some((300, Bytes::from_static(b"p0")))
    );
    assert!(rec.groups[&0].entries.is_empty());
    assert_eq!(rec.groups[&1].committed, Some(Bytes::from_static(b"c1")));
    let want: Vec<_> = (151..=300).map(|i| ent(2, i, 0, 100)).collect();
    assert_eq!(rec.groups[&2].entries, want);

    s.purge(2, 300, Bytes::from_static(b"p2b"));
    block(s.sync()).unwrap();
    block(s.sync()).unwrap();
    assert!(segments(d.path()).len() <= 2, "{:?}", segments(d.path()));
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), small_segments()).unwrap();
    assert_eq!(rec.groups[&0].vote, Some(Bytes::from_static(b"v0")));
    assert_eq!(rec.groups[&1].committed, Some(Bytes::from_static(b"c1")));
    assert_eq!(
        rec.groups[&2].purged,
        Some((300, Bytes::from_static(b"p2b")))
    );
    assert!(rec.groups.values().all(|g| g.entries.is_empty()));
}

#[test]
fn an_unpurged_group_keeps_its_old_segments() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), small_segments()).unwrap();
    append_wait(&s, 5, vec![ent(5, 1, 0, 10)]).unwrap();
    for i in 1..=60 {
        append_wait(&s, 6, vec![ent(6, i, 0, 300)]).unwrap();
    }
    s.purge(6, 60, Bytes::new());
    block(s.sync()).unwrap();
    block(s.sync()).unwrap();
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), small_segments()).unwrap();
    assert_eq!(rec.groups[&5].entries, vec![ent(5, 1, 0, 10)]);
    assert!(segments(d.path()).len() > 3);
}

/// Five separately synced single-entry appends of group 1; returns the
/// encoded length of the last record.
fn five_batches(dir: &Path) -> usize {
    let (s, _) = LogStore::open(dir, LogOptions::default()).unwrap();
    for i in 1..=5 {
        append_wait(&s, 1, vec![ent(1, i, 0, 50)]).unwrap();
    }
    let mut one = Vec::new();
    let e = ent(1, 5, 0, 50).1;
    record::put_entries(&mut one, 1, true, 5, [&e[..]].into_iter());
    one.len()
}

fn first_four() -> Vec<(u64, Bytes)> {
    (1..=4).map(|i| ent(1, i, 0, 50)).collect()
}

#[test]
fn a_torn_tail_of_the_last_segment_is_cut_off() {
    for cut in [1usize, 7, 30, 0] {
        let d = tempfile::tempdir().unwrap();
        let rec_len = five_batches(d.path());
        // 0: exactly the whole last record.
        let cut = if cut == 0 { rec_len } else { cut };
        let seg = last_segment(d.path());
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - cut as u64).unwrap();
        drop(f);
        let (s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
        assert_eq!(rec.groups[&1].entries, first_four(), "cut {cut}");
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            len - rec_len as u64,
            "the torn bytes are gone from the file"
        );
        // The store goes on where the log ends.
        append_wait(&s, 1, vec![ent(1, 5, 9, 50)]).unwrap();
        drop(s);
        let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
        assert_eq!(rec.groups[&1].entries.len(), 5);
        assert_eq!(rec.groups[&1].entries[4], ent(1, 5, 9, 50));
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_loses_only_that_record() {
    for back in [1usize, 40, 0, 1000] {
        let d = tempfile::tempdir().unwrap();
        let rec_len = five_batches(d.path());
        // 0: the length field's low byte; 1000: its checksum.
        let back = match back {
            0 => rec_len,
            1000 => rec_len - 5,
            b => b,
        };
        let seg = last_segment(d.path());
        let len = std::fs::metadata(&seg).unwrap().len() as usize;
        flip_byte(&seg, len - back);
        let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
        assert_eq!(rec.groups[&1].entries, first_four(), "flip at -{back}");
    }
}

#[test]
fn a_flipped_byte_before_a_later_batch_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    five_batches(d.path());
    let seg = last_segment(d.path());
    // Inside the first entries record (after the header, and the empty
    // checkpoint of a fresh store).
    flip_byte(&seg, record::SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 20);
    let err = LogStore::open(d.path(), LogOptions::default())
        .err()
        .expect("open must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(msg.contains(&seg.display().to_string()), "{msg}");
    assert!(msg.contains("offset 24"), "{msg}");
    assert!(msg.contains("refusing"), "{msg}");
}

#[test]
fn a_flipped_byte_in_an_earlier_segment_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    let rec_len = five_batches(d.path());
    // Reopening starts a new segment, so the data is in an earlier one.
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    append_wait(&s, 1, vec![ent(1, 6, 0, 50)]).unwrap();
    drop(s);
    let segs = segments(d.path());
    assert_eq!(segs.len(), 2);
    let len = std::fs::metadata(&segs[0]).unwrap().len() as usize;
    // The very last byte of the earlier segment: a torn tail anywhere but
    // in the last segment is corruption.
    flip_byte(&segs[0], len - 1);
    let err = LogStore::open(d.path(), LogOptions::default())
        .err()
        .expect("open must fail");
    let msg = err.to_string();
    assert!(msg.contains(&segs[0].display().to_string()), "{msg}");
    assert!(msg.contains(&format!("offset {}", len - rec_len)), "{msg}");
}

#[test]
fn a_torn_new_segment_is_removed() {
    for junk in [&[b'C', b'A', b'I'][..], &[0u8; 24][..], &[0u8; 100][..]] {
        let d = tempfile::tempdir().unwrap();
        five_batches(d.path());
        let last = segment::list_segments(d.path()).unwrap().pop().unwrap().0;
        let torn = segment::segment_path(d.path(), last + 1);
        std::fs::write(&torn, junk).unwrap();
        let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
        assert_eq!(rec.groups[&1].entries.len(), 5);
        // The torn file was removed and its number reused for a sound one.
        let b = std::fs::read(&torn).unwrap();
        assert_eq!(record::decode_segment_header(&b), Ok(last + 1));
    }
}

#[test]
fn a_missing_middle_segment_refuses_to_open() {
    let d = tempfile::tempdir().unwrap();
    for i in 1..=3 {
        let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
        append_wait(&s, 1, vec![ent(1, i, 0, 5)]).unwrap();
    }
    let segs = segments(d.path());
    std::fs::remove_file(&segs[1]).unwrap();
    let err = LogStore::open(d.path(), LogOptions::default())
        .err()
        .expect("open must fail");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn another_format_version_is_named() {
    let d = tempfile::tempdir().unwrap();
    five_batches(d.path());
    flip_byte(&last_segment(d.path()), 8);
    let err = LogStore::open(d.path(), LogOptions::default())
        .err()
        .expect("open must fail");
    assert!(err.to_string().contains("version"), "{err}");
}

#[test]
fn callbacks_fire_only_after_the_fsync_and_in_order() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let gate = s.hooks().fsync_gate.lock();
    for i in 1..=20u64 {
        let order = order.clone();
        s.append(
            1,
            vec![ent(1, i, 0, 10)],
            Box::new(move |r| {
                r.unwrap();
                order.lock().push(i);
            }),
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        order.lock().is_empty(),
        "a callback fired while the fsync was held"
    );
    drop(gate);
    block(s.sync()).unwrap();
    assert_eq!(*order.lock(), (1..=20).collect::<Vec<_>>());
}

#[test]
fn queued_appends_share_one_fsync() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let before = s.stats();
    let gate = s.hooks().fsync_gate.lock();
    let acked = Arc::new(AtomicUsize::new(0));
    for i in 0..200u64 {
        let acked = acked.clone();
        s.append(
            (i % 64) as u16,
            vec![ent(1, i / 64 + 1, 0, 100)],
            Box::new(move |r| {
                r.unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
            }),
        );
    }
    drop(gate);
    block(s.sync()).unwrap();
    let after = s.stats();
    assert_eq!(acked.load(Ordering::SeqCst), 200);
    assert_eq!(after.appends - before.appends, 200);
    // The first batch may have started before the rest were queued;
    // everything queued behind it shares the second fsync.
    assert!(after.fsyncs - before.fsyncs <= 2, "{before:?} -> {after:?}");
    assert!(after.bytes - before.bytes > 200 * 100);
}

#[test]
fn a_lazy_meta_value_never_costs_an_fsync_and_is_kept_by_the_next() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let before = s.stats();
    for i in 0..50u8 {
        s.save_meta_lazy(3, MetaKey::Vote, Bytes::from(vec![i; 8]));
    }
    // A round trip through the writer: everything queued before was
    // handled (the stats are updated before the next op is taken).
    block(s.save_meta(9, MetaKey::Committed, Bytes::from_static(b"x"))).unwrap();
    let mid = s.stats();
    assert!(
        mid.fsyncs - before.fsyncs <= 1,
        "lazy values caused fsyncs: {before:?} -> {mid:?}"
    );
    s.save_meta_lazy(3, MetaKey::Vote, Bytes::from_static(b"last"));
    // A bare sync after lazy bytes makes them durable.
    block(s.sync()).unwrap();
    assert_eq!(
        s.stats().fsyncs - mid.fsyncs,
        1,
        "a sync must fsync lazy bytes"
    );
    append_wait(&s, 3, vec![ent(3, 1, 0, 10)]).unwrap();
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&3].vote.as_deref(), Some(&b"last"[..]));
    assert_eq!(rec.groups[&3].entries.len(), 1);
    assert_eq!(rec.groups[&9].committed.as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_failed_write_fails_the_batch_and_every_later_operation() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    append_wait(&s, 1, vec![ent(1, 1, 0, 10)]).unwrap();
    s.hooks().fail_write.store(true, Ordering::SeqCst);
    let err = append_wait(&s, 1, vec![ent(1, 2, 0, 10)]).unwrap_err();
    assert!(err.to_string().contains("injected write"), "{err}");
    let fsyncs = s.stats().fsyncs;
    assert!(append_wait(&s, 1, vec![ent(1, 2, 0, 10)]).is_err());
    assert!(block(s.save_meta(1, MetaKey::Vote, Bytes::new())).is_err());
    assert!(block(s.sync()).is_err());
    assert_eq!(s.stats().fsyncs, fsyncs, "no fsync after a failure");
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries, vec![ent(1, 1, 0, 10)]);
    assert_eq!(rec.groups[&1].vote, None);
}

#[test]
fn a_failed_fsync_is_never_retried() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    s.hooks().fail_fsync.store(true, Ordering::SeqCst);
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 1..=3 {
        let tx = tx.clone();
        s.append(
            1,
            vec![ent(1, i, 0, 10)],
            Box::new(move |r| tx.send(r).unwrap()),
        );
    }
    for _ in 1..=3 {
        let err = rx.recv().unwrap().unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");
    }
    let fsyncs = s.stats().fsyncs;
    let err = block(s.save_meta(2, MetaKey::Committed, Bytes::new())).unwrap_err();
    assert!(err.to_string().contains("failed earlier"), "{err}");
    assert_eq!(s.stats().fsyncs, fsyncs);
    assert_eq!(s.stats().appends, 0);
}

#[test]
fn a_malformed_append_is_refused_alone() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let err = append_wait(&s, 1, vec![ent(1, 1, 0, 1), ent(1, 3, 0, 1)]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let big = Bytes::from(vec![0u8; record::VALUE_LEN_MAX + 1]);
    let err = block(s.save_meta(1, MetaKey::Vote, big)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    append_wait(&s, 1, vec![ent(1, 1, 0, 1)]).unwrap();
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries, vec![ent(1, 1, 0, 1)]);
    assert_eq!(rec.groups[&1].vote, None);
}

#[test]
fn entries_after_a_gap_are_dropped_until_overwritten() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    append_wait(&s, 1, (1..=3).map(|i| ent(1, i, 0, 5)).collect()).unwrap();
    append_wait(&s, 1, (7..=8).map(|i| ent(1, i, 0, 5)).collect()).unwrap();
    s.purge(2, 10, Bytes::new());
    append_wait(&s, 2, vec![ent(2, 13, 0, 5)]).unwrap();
    drop(s);
    let (s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let want: Vec<_> = (1..=3).map(|i| ent(1, i, 0, 5)).collect();
    assert_eq!(rec.groups[&1].entries, want);
    assert!(rec.groups[&2].entries.is_empty(), "13 does not follow 10");
    // The leader's append at 4 replaces the stray 7..8.
    append_wait(&s, 1, vec![ent(1, 4, 0, 5)]).unwrap();
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries.len(), 4);
}

#[test]
fn appends_larger_than_one_record_are_split_and_recovered() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let entries: Vec<_> = (1..=50).map(|i| ent(3, i, 0, 700)).collect();
    append_wait(&s, 3, entries.clone()).unwrap();
    drop(s);
    let bytes = std::fs::read(last_segment(d.path())).unwrap();
    let mut at = record::SEGMENT_HEADER_LEN;
    let mut records = 0;
    while at < bytes.len() {
        at += record::decode_record(&bytes[at..]).unwrap().1;
        records += 1;
    }
    assert!(records > 1, "split threshold is small in tests");
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&3].entries, entries);
}

#[test]
fn a_directory_is_opened_by_one_store_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert!(LogStore::open(d.path(), LogOptions::default()).is_err());
    drop(s);
    LogStore::open(d.path(), LogOptions::default()).unwrap();
}

#[test]
fn the_volatile_store_acknowledges_at_once() {
    let s = LogStore::volatile();
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    s.append(
        1,
        vec![ent(1, 1, 0, 5)],
        Box::new(move |r| {
            r.unwrap();
            f.fetch_add(1, Ordering::SeqCst);
        }),
    );
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    s.truncate(1, 1);
    s.purge(1, 1, Bytes::new());
    block(s.save_meta(1, MetaKey::Vote, Bytes::new())).unwrap();
    block(s.sync()).unwrap();
    assert_eq!(s.stats().fsyncs, 0);
}

#[test]
fn dropping_the_last_handle_inside_a_callback_does_not_hang() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = s.clone();
    s.append(
        1,
        vec![ent(1, 1, 0, 5)],
        Box::new(move |r| {
            drop(s2);
            tx.send(r).unwrap();
        }),
    );
    drop(s);
    rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
}

#[test]
fn close_unlocks_the_directory_while_handles_live_on() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let held = s.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    s.append(
        1,
        vec![ent(1, 1, 0, 5)],
        Box::new(move |r| tx.send(r).unwrap()),
    );
    block(s.close()).unwrap();
    // Queued before the close: durable and acknowledged.
    rx.recv().unwrap().unwrap();
    let (s2, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries, vec![ent(1, 1, 0, 5)]);
    let err = append_wait(&held, 1, vec![ent(1, 2, 0, 5)]).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(block(held.sync()).is_err());
    assert!(block(held.close()).is_err());
    drop((s, held));
    append_wait(&s2, 1, vec![ent(1, 2, 0, 5)]).unwrap();
}

#[test]
fn handles_and_their_futures_can_cross_threads() {
    fn handle<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn future<F: std::future::Future + Send>(_: F) {}
    let s = LogStore::volatile();
    handle(&s);
    future(s.save_meta(0, MetaKey::Vote, Bytes::new()));
    future(s.sync());
    future(s.close());
}

/// The Raft loop's iteration: two groups' appends, a hard state and a
/// lazy commit point in one batch.
fn loop_batch(g1: u64, g2: u64) -> LogBatch {
    let mut b = LogBatch::new();
    b.append(1, vec![ent(1, g1, 0, 40)]);
    b.append(2, vec![ent(2, g2, 0, 40), ent(2, g2 + 1, 0, 40)]);
    b.save_meta(1, MetaKey::Vote, Bytes::from(format!("vote{g1}")));
    b.save_meta_lazy(2, MetaKey::Committed, Bytes::from(format!("commit{g2}")));
    b
}

#[test]
fn a_batch_committed_now_is_durable_in_one_fsync_and_ordered() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let before = s.stats();
    s.commit_now(loop_batch(1, 1)).unwrap();
    let after = s.stats();
    assert_eq!(after.fsyncs - before.fsyncs, 1, "{before:?} -> {after:?}");
    assert_eq!(after.appends - before.appends, 2);
    // A truncation, then an append over the cut, in one batch: in order.
    let mut b = LogBatch::new();
    b.truncate(2, 2);
    b.append(2, vec![ent(2, 2, 7, 40)]);
    b.purge(1, 0, Bytes::from_static(b"p"));
    s.commit_now(b).unwrap();
    // Lazy values only: written, and no fsync.
    let mut b = LogBatch::new();
    b.save_meta_lazy(2, MetaKey::Committed, Bytes::from_static(b"lazy"));
    assert!(!b.is_waited());
    let f = s.stats().fsyncs;
    s.commit_now(b).unwrap();
    assert_eq!(s.stats().fsyncs, f, "a lazy batch costs no fsync");
    // Queued as one op through the writer thread, after the direct ones.
    let (tx, rx) = std::sync::mpsc::channel();
    s.submit(loop_batch(2, 3), Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(
        rec.groups[&1].entries,
        vec![ent(1, 1, 0, 40), ent(1, 2, 0, 40)]
    );
    assert_eq!(rec.groups[&1].vote.as_deref(), Some(&b"vote2"[..]));
    assert_eq!(rec.groups[&1].purged, Some((0, Bytes::from_static(b"p"))));
    assert_eq!(
        rec.groups[&2].entries,
        vec![
            ent(2, 1, 0, 40),
            ent(2, 2, 7, 40),
            ent(2, 3, 0, 40),
            ent(2, 4, 0, 40)
        ],
    );
    assert_eq!(rec.groups[&2].committed.as_deref(), Some(&b"commit3"[..]));
}

#[test]
fn a_malformed_part_fails_its_batch() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    let mut b = loop_batch(1, 1);
    b.append(3, vec![ent(3, 1, 0, 1), ent(3, 3, 0, 1)]);
    let err = s.commit_now(b).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let mut b = loop_batch(2, 3);
    b.save_meta(
        4,
        MetaKey::Vote,
        Bytes::from(vec![0u8; record::VALUE_LEN_MAX + 1]),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    s.submit(b, Box::new(move |r| tx.send(r).unwrap()));
    assert_eq!(
        rx.recv().unwrap().unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    // Only the malformed parts were refused.
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries.len(), 2);
    assert!(!rec.groups.contains_key(&3) && !rec.groups.contains_key(&4));
}

#[test]
fn a_batch_on_a_failed_or_closed_store_fails() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    s.hooks().fail_fsync.store(true, Ordering::SeqCst);
    let err = s.commit_now(loop_batch(1, 1)).unwrap_err();
    assert!(err.to_string().contains("fsync"), "{err}");
    assert!(s.commit_now(loop_batch(1, 1)).is_err());
    let d2 = tempfile::tempdir().unwrap();
    let (s2, _) = LogStore::open(d2.path(), LogOptions::default()).unwrap();
    block(s2.close()).unwrap();
    let err = s2.commit_now(loop_batch(1, 1)).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
}

/// The last segment's bytes: its records, then what follows them.
fn records_end(path: &Path) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let mut at = record::SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        match record::decode_record(&bytes[at..]) {
            Ok((_, used)) => at += used,
            Err(_) => break,
        }
    }
    assert!(
        bytes[at..].iter().all(|&b| b == 0),
        "only zeros after the records"
    );
    (at, bytes.len())
}

#[test]
fn zeros_are_written_ahead_and_trimmed_at_rotation_and_close() {
    let d = tempfile::tempdir().unwrap();
    let (s, _) = LogStore::open(d.path(), small_segments()).unwrap();
    s.commit_now(loop_batch(1, 1)).unwrap();
    let (data, size) = records_end(&last_segment(d.path()));
    assert!(
        size >= data + writer::PREALLOC_BYTES as usize,
        "{data} {size}"
    );
    // Across several rotations: every older segment ends with its last
    // record (recovery refuses damage anywhere but at the very end).
    for i in 2..60 {
        s.commit_now(loop_batch(i, 2 * i - 1)).unwrap();
    }
    let segs = segments(d.path());
    assert!(segs.len() > 3, "{segs:?}");
    for seg in &segs[..segs.len() - 1] {
        let (data, size) = records_end(seg);
        assert_eq!(data, size, "{} keeps zeros", seg.display());
    }
    drop(s);
    let (data, size) = records_end(&last_segment(d.path()));
    assert_eq!(data, size, "closing trims the zeros");
    let (_s, rec) = LogStore::open(d.path(), small_segments()).unwrap();
    assert_eq!(rec.groups[&1].entries.len(), 59);
    assert_eq!(rec.groups[&2].entries.len(), 118);
}

#[test]
fn zeros_left_by_a_crash_end_the_last_segment_quietly() {
    let d = tempfile::tempdir().unwrap();
    five_batches(d.path());
    let seg = last_segment(d.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    // A crash keeps the zeros written ahead: the file is longer.
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len + 3 * 4096).unwrap();
    drop(f);
    let (s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries.len(), 5);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len,
        "the zeros were cut"
    );
    append_wait(&s, 1, vec![ent(1, 6, 0, 50)]).unwrap();
    drop(s);
    let (_s, rec) = LogStore::open(d.path(), LogOptions::default()).unwrap();
    assert_eq!(rec.groups[&1].entries.len(), 6);
    // In an older segment, zeros after the records are damage.
    let segs = segments(d.path());
    let older = &segs[segs.len() - 2];
    let len = std::fs::metadata(older).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(older).unwrap();
    f.set_len(len + 4096).unwrap();
    drop(f);
    let err = LogStore::open(d.path(), LogOptions::default())
        .err()
        .expect("open must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}
