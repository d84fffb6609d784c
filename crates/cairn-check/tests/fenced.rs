//! Fenced writes and their counters: hand-written histories that pin down
//! each violation (and the near misses that are not one), then a simulated
//! lock server, correct and buggy, that the checker must pass and catch.

use std::collections::BTreeMap;

use cairn_check::{
    check_counter_bounds, check_fenced, check_lock_history, FenceOutcome, FenceViolationKind,
    FencedError, FencedWrite, LockHistory, LockHistoryError, LockHold, LockVerdict,
};

fn hold(token: u64, invoke: u64, ack: u64, lease: u64, release: Option<u64>) -> LockHold {
    LockHold {
        lock: "L".into(),
        process: token,
        token,
        acquire_invoke_ns: invoke,
        acquire_ack_ns: ack,
        lease_ns: Some(lease),
        release_invoke_ns: release,
        renew_invoke_ns: None,
    }
}

fn write(token: u64, invoke: u64, ack: u64, outcome: FenceOutcome) -> FencedWrite {
    FencedWrite {
        lock: "L".into(),
        key: "c".into(),
        process: token,
        token,
        delta: 1,
        invoke_ns: invoke,
        ack_ns: ack,
        outcome,
        value: None,
    }
}

use FenceOutcome::{Accepted, Failed, Refused, Unknown};

fn kinds(writes: &[FencedWrite], holds: &[LockHold]) -> Vec<(FenceViolationKind, usize)> {
    check_fenced(writes, holds)
        .unwrap()
        .violations
        .iter()
        .map(|v| (v.kind, v.write))
        .collect()
}

/// Token 5 held from 10 until its lease may end at 100; token 9 from 130
/// until its release at 155.
fn two_holds() -> Vec<LockHold> {
    vec![
        hold(5, 0, 10, 100, None),
        hold(9, 120, 130, 1_000, Some(155)),
    ]
}

#[test]
fn stale_write_accepted_after_a_newer_holders_write_is_caught() {
    // Token 9 writes at 140-150; token 5's write goes in at 160-170,
    // after both holds (so only the order gives it away).
    let writes = [write(9, 140, 150, Accepted), write(5, 160, 170, Accepted)];
    let v = check_fenced(&writes, &two_holds()).unwrap().violations;
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].kind, FenceViolationKind::StaleAccepted);
    assert_eq!((v[0].write, v[0].other), (1, Some(0)));
    // Refused, it is what fencing is for.
    let writes = [write(9, 140, 150, Accepted), write(5, 160, 170, Refused)];
    assert!(kinds(&writes, &two_holds()).is_empty());
    // Concurrent writes may apply in either order.
    let writes = [write(9, 140, 165, Accepted), write(5, 160, 170, Accepted)];
    assert!(kinds(&writes, &two_holds()).is_empty());
    // A stale write accepted *before* the newer one is fine.
    let writes = [write(5, 20, 30, Accepted), write(9, 140, 150, Accepted)];
    assert!(kinds(&writes, &two_holds()).is_empty());
}

#[test]
fn accepted_write_inside_another_grants_hold_is_caught() {
    // Token 5 (lease long gone) writes at 135-145, inside token 9's hold.
    let writes = [write(5, 135, 145, Accepted)];
    assert_eq!(
        kinds(&writes, &two_holds()),
        vec![(FenceViolationKind::AcceptedDuringOtherHold, 0)]
    );
    // Straddling token 9's grant (sent at 125, before its ack at 130): it
    // may have been applied before the grant.
    let writes = [write(5, 125, 145, Accepted)];
    assert!(kinds(&writes, &two_holds()).is_empty());
    // Straddling token 9's release: may have been applied after it.
    let writes = [write(5, 150, 160, Accepted)];
    assert!(kinds(&writes, &two_holds()).is_empty());
    // Token 9's own write inside its hold is what should happen.
    let writes = [write(9, 135, 145, Accepted)];
    assert!(kinds(&writes, &two_holds()).is_empty());
}

#[test]
fn write_refused_while_its_grant_certainly_held_is_caught() {
    let writes = [write(5, 40, 50, Refused)];
    assert_eq!(
        kinds(&writes, &two_holds()),
        vec![(FenceViolationKind::RefusedWhileHeld, 0)]
    );
    // Reaching past the lease (which may have ended at 100): fine.
    let writes = [write(5, 90, 110, Refused)];
    assert!(kinds(&writes, &two_holds()).is_empty());
    // Refused *in another's hold*, accepted in its own: fine.
    let writes = [write(5, 135, 140, Refused), write(5, 40, 50, Accepted)];
    assert!(kinds(&writes, &two_holds()).is_empty());
    // -TRYAGAIN is not the fence's refusal: nothing to say.
    let writes = [write(5, 40, 50, Failed), write(5, 60, 70, Unknown)];
    assert!(kinds(&writes, &two_holds()).is_empty());
}

#[test]
fn accepted_write_with_a_token_never_granted_is_caught() {
    let writes = [write(7, 110, 115, Accepted), write(7, 116, 118, Refused)];
    assert_eq!(
        kinds(&writes, &two_holds()),
        vec![(FenceViolationKind::UnknownToken, 0)]
    );
    // Holds of another lock do not vouch for it.
    let mut holds = two_holds();
    holds.push(LockHold {
        lock: "M".into(),
        ..hold(7, 0, 1, 10, None)
    });
    assert_eq!(kinds(&writes, &holds).len(), 1);
}

#[test]
fn malformed_writes_are_errors() {
    let writes = [write(5, 40, 50, Accepted), write(5, 60, 59, Accepted)];
    assert!(matches!(
        check_fenced(&writes, &two_holds()),
        Err(FencedError::AckBeforeInvoke { index: 1, .. })
    ));
}

fn finals(v: Option<i64>) -> BTreeMap<String, Option<i64>> {
    BTreeMap::from([("c".to_owned(), v)])
}

#[test]
fn counter_must_hold_every_accepted_and_at_most_every_unknown_increment() {
    // 3 accepted, 2 unknown, 1 refused, 1 failed: [3, 5].
    let writes = [
        write(5, 0, 1, Accepted),
        write(5, 2, 3, Accepted),
        write(5, 4, 5, Accepted),
        write(5, 6, 7, Unknown),
        write(5, 8, 9, Unknown),
        write(5, 10, 11, Refused),
        write(5, 12, 13, Failed),
    ];
    let verdict = |v| check_counter_bounds(&writes, &finals(v))[0].verdict();
    for ok in 3..=5 {
        assert_eq!(verdict(Some(ok)), LockVerdict::Valid, "{ok}");
    }
    // One acknowledged increment lost; one applied twice (or a refused one
    // applied after all).
    assert_eq!(verdict(Some(2)), LockVerdict::Invalid);
    assert_eq!(verdict(Some(6)), LockVerdict::Invalid);
    assert_eq!(verdict(None), LockVerdict::Unknown);
    // Never read at all: unknown, never valid.
    assert_eq!(
        check_counter_bounds(&writes, &BTreeMap::new())[0].verdict(),
        LockVerdict::Unknown
    );
    let b = &check_counter_bounds(&writes, &finals(Some(4)))[0];
    assert_eq!((b.low, b.high, b.accepted, b.unknown), (3, 5, 3, 2));
    // A counter read but never written must read 0.
    let bounds = check_counter_bounds(&[], &finals(Some(1)));
    assert_eq!(bounds[0].verdict(), LockVerdict::Invalid);
}

#[test]
fn lock_history_verdict_combines_every_check_and_round_trips_json() {
    let ok = LockHistory {
        holds: two_holds(),
        writes: vec![write(5, 20, 30, Accepted), write(9, 135, 140, Accepted)],
        finals: finals(Some(2)),
    };
    let text = serde_json::to_string(&ok).unwrap();
    let back: LockHistory = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ok);
    assert_eq!(
        check_lock_history(&back).unwrap().verdict,
        LockVerdict::Valid
    );
    // Each part on its own makes the whole invalid (or unknown).
    let mut lost = ok.clone();
    lost.finals = finals(Some(1));
    assert_eq!(
        check_lock_history(&lost).unwrap().verdict,
        LockVerdict::Invalid
    );
    let mut unread = ok.clone();
    unread.finals = finals(None);
    assert_eq!(
        check_lock_history(&unread).unwrap().verdict,
        LockVerdict::Unknown
    );
    let mut overlap = ok.clone();
    overlap.holds.push(hold(11, 40, 50, 1_000, Some(60)));
    let r = check_lock_history(&overlap).unwrap();
    assert_eq!(r.verdict, LockVerdict::Invalid);
    assert_eq!(r.locks.overlaps.len(), 1);
    let mut stale = ok.clone();
    stale.writes.push(write(5, 136, 139, Accepted));
    stale.finals = finals(Some(3));
    assert_eq!(
        check_lock_history(&stale).unwrap().verdict,
        LockVerdict::Invalid
    );
    let mut bad = ok;
    bad.holds[0].acquire_ack_ns = 0;
    bad.holds[0].acquire_invoke_ns = 5;
    assert!(matches!(
        check_lock_history(&bad),
        Err(LockHistoryError::Hold(_))
    ));
}

// ------------------------------------------------------------ simulation

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// How the simulated server decides a fenced write.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    /// Applied only while the lock is held with exactly the token.
    Correct,
    /// Applied with any token ever granted (no fence at all).
    NoFence,
    /// Refuses any write once the holder's lease is half over.
    EarlyExpiry,
}

/// One lock, grants one after another (each applied at an instant inside
/// its acquire's interval, held until its lease runs out or its release
/// is applied), each holder sending fenced increments until it releases —
/// sometimes long after its lease. Every write applies at one instant
/// inside its interval and is decided there by `server`; some replies are
/// lost (`Unknown`, applied or not).
fn simulate(seed: u64, server: Server) -> LockHistory {
    const LEASE: u64 = 100;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // (grant instant, end instant, token) of each hold, as the server saw it.
    let mut real = Vec::new();
    let mut history = LockHistory::default();
    let (mut t, mut token) = (0, 0);
    for _ in 0..30 {
        // Often asked for while the previous holder still holds.
        let invoke = (t + rng.below(30)).saturating_sub(rng.below(60));
        let granted = invoke.max(t) + rng.below(20);
        let ack = granted + rng.below(20);
        token += 1 + rng.below(3);
        let release = ack + rng.below(2 * LEASE);
        let end = (granted + LEASE).min(release + rng.below(10));
        real.push((granted, end, token));
        history
            .holds
            .push(hold(token, invoke, ack, LEASE, Some(release)));
        t = end;
    }
    let mut counter = 0;
    for h in history.holds.clone() {
        let mut at = h.acquire_ack_ns;
        let release = h.release_invoke_ns.unwrap_or(at);
        while at < release {
            let invoke = at + rng.below(20);
            if invoke >= release {
                break;
            }
            let ack = invoke + 1 + rng.below(30);
            let applied_at = invoke + rng.below(ack - invoke);
            let holder = real
                .iter()
                .find(|&&(g, e, _)| g <= applied_at && applied_at < e)
                .copied();
            let accepted = match (server, holder) {
                (Server::Correct, Some((_, _, tok))) => tok == h.token,
                (Server::NoFence, _) => true,
                (Server::EarlyExpiry, Some((g, _, tok))) => {
                    tok == h.token && applied_at < g + LEASE / 2
                }
                (_, None) => false,
            };
            let mut outcome = if accepted { Accepted } else { Refused };
            if rng.below(10) == 0 {
                outcome = Unknown;
            }
            counter += i64::from(accepted);
            history.writes.push(write(h.token, invoke, ack, outcome));
            at = ack;
        }
    }
    history.finals = finals(Some(counter));
    history
}

#[test]
fn simulated_correct_server_always_passes() {
    for seed in 0..300 {
        let h = simulate(seed, Server::Correct);
        let r = check_lock_history(&h).unwrap();
        assert_eq!(r.verdict, LockVerdict::Valid, "seed {seed}: {r:?}");
    }
}

#[test]
fn simulated_buggy_servers_are_caught() {
    for server in [Server::NoFence, Server::EarlyExpiry] {
        let caught = (0..300)
            .filter(|&seed| {
                let h = simulate(seed, server);
                check_lock_history(&h).unwrap().verdict == LockVerdict::Invalid
            })
            .count();
        assert!(caught > 250, "caught {caught} of 300");
    }
}
