//! Fuzzes the ACL parsers: an ACL file (untrusted text from disk, ACL
//! LOAD) and ACL SETUSER rules (untrusted bytes from clients). Any input
//! gives users or an error, never a panic, and every accepted user's
//! description (what ACL LIST, ACL SAVE and cluster replication carry)
//! rebuilds the same user (`cairn_server::fuzz_acl`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_server::fuzz_acl(data);
});
