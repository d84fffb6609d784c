//! What every example shares: where the cluster is.

/// Seeds from the command line, else `cairn dev`'s first node.
pub fn seeds() -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        vec!["127.0.0.1:7001".to_string()]
    } else {
        args
    }
}
