//! The fault lab's fallback for machines without root or network
//! namespaces (`cairn_lab::loopback`): a 3-node cluster on 127.0.0.11-13
//! with an in-process fault proxy between the nodes. It runs everywhere,
//! root or not, so this is also what an unprivileged developer gets.

use std::time::Duration;

use cairn_lab::loopback::{LoopbackCluster, FALLBACK_NOTE};
use cairn_lab::workload::{self, Kind};

mod common;

fn workload_cfg(targets: Vec<String>, kind: Kind, seed: u64) -> workload::Config {
    workload::Config {
        targets,
        keys: 3,
        key_prefix: format!("{{lb{seed}}}:"),
        read_percent: 50,
        ops_per_key: 40,
        ops: 100_000,
        processes: 6,
        timeout: Duration::from_secs(1),
        duration: Some(Duration::from_secs(13)),
        think: Duration::from_millis(5),
        seed,
        kind,
    }
}

/// Partition of one node (both ways), SIGKILL + restart of another,
/// SIGSTOP of the third, under register and counter workloads: both
/// histories linearizable, replicas identical afterwards. The partition
/// is shown to bite: a write forwarded from the cut-off node fails while
/// it lasts.
#[test]
fn loopback_fallback_partition_kill_and_pause_keep_histories_linearizable() {
    let _serial = common::serial();
    eprintln!("{FALLBACK_NOTE}");
    let bin = common::cairn_binary();
    let mut c =
        LoopbackCluster::start(&bin, 3, &common::debug_timing()).expect("loopback cluster starts");
    let targets = c.targets();
    let runs: Vec<_> = [(Kind::Register, 71), (Kind::Counter, 72)]
        .into_iter()
        .map(|(kind, seed)| {
            let cfg = workload_cfg(targets.clone(), kind, seed);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                (kind, rt.block_on(workload::run(cfg)))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // n1 cut off from n2 and n3: writes it must forward to a leader on
    // the other side cannot get through.
    c.partition(&[0], &[1, 2]);
    let mut refused = 0;
    for i in 0..8 {
        let k = format!("cut:{i}");
        match c.command_within(0, &["SET", &k, "1"], Duration::from_millis(1500)) {
            Ok(r) if !r.starts_with('-') => {}
            _ => refused += 1,
        }
    }
    assert!(
        refused > 0,
        "the partition cut nothing: every write through n1 succeeded"
    );
    std::thread::sleep(Duration::from_secs(2));
    c.heal();
    std::thread::sleep(Duration::from_secs(1));
    c.kill(1).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    c.restart(1).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.pause(2, true).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    c.pause(2, false).unwrap();
    for run in runs {
        common::check_workload(run);
    }
    c.wait_ok(Duration::from_secs(60))
        .expect("every node ready again");
    for i in 0..32 {
        let k = format!("healed:{i}");
        // Leaders may still move (automatic rebalancing after the heal):
        // a retryable answer is retried, as a client would (SET of a
        // fixed value is idempotent).
        let mut r = String::new();
        for _ in 0..50 {
            r = c.command(0, &["SET", &k, "1"]).unwrap();
            if !(r.contains("TRYAGAIN") || r.contains("UNKNOWN")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(r, "OK", "{k} after the heal");
    }
    let ds = c.converged_digests(Duration::from_secs(60));
    assert!(
        ds.windows(2).all(|w| w[0] == w[1]),
        "replicas differ: {ds:#?}"
    );
}
