//! Against a local cluster: `cargo run --release -p cairn-cli -- dev --nodes 3 --port 7001`,
//! then `cargo run -p cairn-client --example quickstart` (or pass seeds:
//! `-- 127.0.0.1:7301`).

mod common;

use std::time::Duration;

use cairn_client::{Client, ClientConfig, Cmd, ReadFrom};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ClientConfig::new(common::seeds())).await?;

    client
        .set("greeting", "hello", Some(Duration::from_secs(60)))
        .await?;
    let v: Option<String> = client.get("greeting").await?;
    println!(
        "greeting = {v:?} (leader {:?})",
        client.leader_of(b"greeting")
    );

    let n = client.incr_by("visits", 1).await?;
    println!("visits = {n}");

    // A possibly stale read from any replica of the key's group.
    let stale = Cmd::new("GET")
        .arg("greeting")
        .read_from(ReadFrom::AnyReplica);
    println!("from a replica: {:?}", client.execute(&stale).await?);

    println!("{:?}", client.stats());
    Ok(())
}
