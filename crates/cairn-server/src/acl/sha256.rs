//! SHA-256 for ACL passwords: Redis stores and shows each password as
//! the lowercase hex of its SHA-256, so cairn computes the same digest —
//! with ring's (already in the tree for TLS and the peer handshake), the
//! standard's test vectors below pinning it.

/// The SHA-256 digest of `data`.
pub(crate) fn digest(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex, as Redis shows password hashes.
pub(crate) fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hash as Redis accepts it (`#<hash>`): exactly 64 lowercase
/// hex digits.
pub(crate) fn parse_hex(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (nib(pair[0])? << 4) | nib(pair[1])?;
    }
    Some(out)
}

/// Compares two digests in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_the_standard_vectors() {
        assert_eq!(
            hex(&digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&digest(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // Redis' own hash of "pw" (ACL GETUSER after `>pw`).
        assert_eq!(
            hex(&digest(b"pw")),
            "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(
            hex(&digest(&long)),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_uppercase_and_bad_length() {
        let d = digest(b"x");
        assert_eq!(parse_hex(hex(&d).as_bytes()), Some(d));
        assert_eq!(parse_hex(hex(&d).to_uppercase().as_bytes()), None);
        assert_eq!(parse_hex(b"abc"), None);
        assert!(ct_eq(&d, &d));
        assert!(!ct_eq(&d, &digest(b"y")));
    }
}
