//! Key → slot: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo
//! 16384 — the Redis Cluster rule, which the server applies too. Getting
//! this wrong sends every request to the wrong leader, so it is tested
//! against the values the server and Redis report.

/// Number of hash slots in a cairn (or Redis) cluster.
pub const SLOTS: u16 = 16384;

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The hash slot of `key`, honouring `{hash tags}` exactly as Redis: the
/// part between the first `{` and the first `}` after it, when that part
/// is not empty.
pub fn slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_part(key)) % SLOTS
}

fn hash_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_values_redis_reports() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn hash_tags_follow_the_redis_rule() {
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{user1000}.followers"), slot(b"user1000"));
        // An empty tag hashes the whole key.
        assert_eq!(slot(b"foo{}{bar}"), CRC16.checksum(b"foo{}{bar}") % SLOTS);
        // Only the first tag counts.
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        // No closing brace: the whole key.
        assert_eq!(slot(b"foo{bar"), CRC16.checksum(b"foo{bar") % SLOTS);
    }
}
