//! A lock guard with fencing against a local cluster
//! (`cargo run --release -p cairn-cli -- dev --nodes 3 --port 7001`):
//! `cargo run -p cairn-client --example lock [-- seed...]`.

mod common;

use std::time::Duration;

use cairn_client::{Client, ClientConfig, LockOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ClientConfig::new(common::seeds())).await?;

    // The lock and the data it guards share a hash tag: one slot, one group.
    let opts = LockOptions::default().lease(Duration::from_secs(5));
    let Some(guard) = client.lock("{report}:lock", opts.clone()).await? else {
        println!("someone else holds {{report}}:lock");
        return Ok(());
    };
    println!("holding {{report}}:lock with token {}", guard.token());

    // A second owner waits in the queue until the first releases.
    let other = client.clone();
    let waiter = tokio::spawn(async move {
        let opts = opts.wait(Duration::from_secs(10));
        other
            .lock("{report}:lock", opts)
            .await
            .map(|g| g.map(|g| g.token()))
    });

    // Work under the lock; stop at once if it is lost.
    tokio::select! {
        why = guard.lost() => println!("lost the lock: {why}"),
        r = client.set_fenced("{report}:data", "v1", &guard) => {
            r?;
            println!("fenced write applied");
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // renewal keeps it
    println!("still held: {}", guard.is_held());
    let stale = guard.token();
    println!("released: {}", guard.release().await?);
    println!("waiter got token {:?}", waiter.await??);

    // The old token no longer fences anything.
    let cmd = cairn_client::Cmd::new("SET")
        .arg("{report}:data")
        .arg("v2")
        .arg("FENCE")
        .arg("{report}:lock")
        .arg(stale);
    match client.execute(&cmd).await {
        Err(e) if e.is_fenced() => println!("stale token refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
