//! Fuzzes `RequestParser::parse` with small limits.
//!
//! The first four input bytes choose the limits and where the input is cut
//! into "reads"; the rest is the byte stream a client sent (any number of
//! pipelined requests, valid or not). Checked:
//!
//! * no panic, no endless loop (every completed request consumes >= 1 byte);
//! * `consumed` never exceeds the bytes offered;
//! * `bytes_needed()` after an incomplete parse never exceeds what the limits
//!   allow (it may be stale, i.e. already satisfied: it is only a hint for
//!   buffer reservation);
//! * feeding the stream in one read, or cut into several reads, gives the
//!   same requests with the same arguments, and the same error (if any).

#![no_main]

use cairn_proto::{Limits, ProtoError, RequestParser};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Run {
    /// Every request that completed, with its arguments.
    requests: Vec<Vec<Vec<u8>>>,
    /// How the stream ended: `None` when all input was consumed or the rest
    /// is an incomplete request; `Some(err)` on a protocol error.
    error: Option<ProtoError>,
    /// Bytes consumed by completed requests.
    consumed: usize,
}

/// Parses `input` as it arrives in reads ending at each of `cuts` (sorted,
/// the last being `input.len()`).
fn parse_stream(input: &[u8], cuts: &[usize], limits: &Limits) -> Run {
    let mut parser = RequestParser::new();
    let mut requests = Vec::new();
    let mut off = 0;
    let mut cut = 0;
    let mut avail = cuts[0];
    loop {
        let buf = &input[off..avail];
        match parser.parse(buf, limits) {
            Ok(Some(n)) => {
                assert!(n >= 1, "a completed request consumed nothing");
                assert!(n <= buf.len(), "consumed {n} of {} bytes", buf.len());
                let args = parser.args(buf);
                requests.push((0..args.len()).map(|i| args.get(i).to_vec()).collect());
                off += n;
            }
            Ok(None) => {
                let need = parser.bytes_needed();
                // The hint is checked against the limits before it is given:
                // at most a header already present plus a whole bulk.
                assert!(
                    need <= buf.len() + limits.bulk_len_max + 2,
                    "bytes_needed {need} beyond limits (have {})",
                    buf.len()
                );
                if avail == input.len() {
                    return Run {
                        requests,
                        error: None,
                        consumed: off,
                    };
                }
                cut += 1;
                avail = cuts[cut];
            }
            Err(e) => {
                return Run {
                    requests,
                    error: Some(e),
                    consumed: off,
                };
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ctl, input) = data.split_at(4);
    // Small limits, so that every limit check is reachable with small inputs.
    let limits = Limits {
        bulk_len_max: ctl[0] as usize % 64,
        multibulk_len_max: ctl[1] as usize % 16,
        inline_len_max: ctl[2] as usize % 128,
        query_buffer_max: 1 << 20,
    };
    let whole = parse_stream(input, &[input.len()], &limits);

    // The same stream in two reads, then in three.
    let a = (ctl[3] as usize * 7919 + ctl[0] as usize) % (input.len() + 1);
    let b = (ctl[3] as usize * 104_729 + ctl[1] as usize * 31) % (input.len() + 1);
    let two = parse_stream(input, &[a, input.len()], &limits);
    assert_eq!(whole, two, "split at {a}");
    let (lo, hi) = (a.min(b), a.max(b));
    let three = parse_stream(input, &[lo, hi, input.len()], &limits);
    assert_eq!(whole, three, "split at {lo} and {hi}");

    // Byte by byte is the harshest split; only for short streams (it is
    // quadratic).
    if input.len() <= 256 {
        let cuts: Vec<usize> = (0..=input.len()).collect();
        let bytewise = parse_stream(input, &cuts, &limits);
        assert_eq!(whole, bytewise, "byte by byte");
    }
});
