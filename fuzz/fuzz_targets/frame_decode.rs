//! Fuzzes `Frame::decode` (the RESP2/RESP3 value decoder) and `encode`.
//!
//! The first input byte chooses the length limit; the rest is decoded.
//! Checked:
//!
//! * no panic (and, through libFuzzer's -rss_limit_mb / -malloc_limit_mb,
//!   no allocation beyond what the input can justify);
//! * a decoded frame consumed between 1 and `input.len()` bytes;
//! * decoding just the consumed bytes gives the same frame, and a strict
//!   prefix of them is reported incomplete, never as an error;
//! * encoding the frame and decoding the encoding gives the same frame back
//!   and consumes the whole encoding.

#![no_main]

use cairn_proto::Frame;
use libfuzzer_sys::fuzz_target;

/// Frame equality where NaN equals NaN (`,nan\r\n` is a valid double).
fn same(a: &Frame, b: &Frame) -> bool {
    match (a, b) {
        (Frame::Double(x), Frame::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Frame::Array(x), Frame::Array(y))
        | (Frame::Set(x), Frame::Set(y))
        | (Frame::Push(x), Frame::Push(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Frame::Map(x), Frame::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let len_max = match ctl % 4 {
        0 => 0,
        1 => 8,
        2 => 1024,
        _ => usize::MAX,
    };
    let Ok(Some((frame, used))) = Frame::decode(input, len_max) else {
        return;
    };
    assert!(
        used >= 1 && used <= input.len(),
        "used {used} of {}",
        input.len()
    );

    // The frame is delimited by its own bytes: trailing input is irrelevant.
    match Frame::decode(&input[..used], len_max) {
        Ok(Some((again, n))) => {
            assert_eq!(n, used);
            assert!(same(&frame, &again), "{frame:?} != {again:?}");
        }
        other => panic!("the consumed bytes alone decode as {other:?}"),
    }
    for cut in [0, used / 2, used - 1] {
        assert_eq!(
            Frame::decode(&input[..cut], len_max),
            Ok(None),
            "strict prefix of {cut} bytes of a valid frame"
        );
    }

    // Round trip through the encoder.
    let mut enc = Vec::new();
    frame.encode(&mut enc);
    match Frame::decode(&enc, usize::MAX) {
        Ok(Some((back, n))) => {
            assert!(
                same(&frame, &back),
                "re-encoded {frame:?} as {:?}, which decodes as {back:?}",
                String::from_utf8_lossy(&enc)
            );
            assert_eq!(
                n,
                enc.len(),
                "encoding {:?} of {frame:?} decodes with bytes left over",
                String::from_utf8_lossy(&enc)
            );
        }
        other => panic!(
            "encoding {:?} of {frame:?} does not decode: {other:?}",
            String::from_utf8_lossy(&enc)
        ),
    }
});
