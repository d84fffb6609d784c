//! Bitmap commands and LCS side by side with redis-server 7.0: the same
//! sequence, error cases included, must give identical replies
//! (docs/design/datatypes.md, "Bitmaps and LCS"; docs/COMPATIBILITY.md).
//!
//! A script line is a command split on spaces; in an argument `\xHH` is
//! that byte and `""` alone is the empty string. `sort:` compares a reply
//! with its items sorted (ACL CAT's order is Redis' hash table's).

use redis::Value;

mod common;

use common::{connect, Server};

/// An argument of a script line: `\xHH` escapes, `""` for empty.
fn unescape(token: &str) -> Vec<u8> {
    if token == "\"\"" {
        return Vec::new();
    }
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Array(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Array(items)
        }
        Value::Set(mut items) => {
            items.sort_by_key(|i| format!("{i:?}"));
            Value::Set(items)
        }
        other => other,
    }
}

fn play(url: &str, script: &[String]) -> Vec<(String, Result<Value, String>)> {
    let mut c = connect(url);
    redis::cmd("FLUSHALL").query::<()>(&mut c).expect("flush");
    script
        .iter()
        .map(|line| {
            let (sort, text) = match line.strip_prefix("sort: ") {
                Some(t) => (true, t),
                None => (false, line.as_str()),
            };
            let mut args = text.split(' ').map(unescape);
            let mut cmd = redis::cmd(&String::from_utf8_lossy(&args.next().unwrap_or_default()));
            for a in args {
                cmd.arg(a);
            }
            let r = cmd
                .query::<Value>(&mut c)
                .map(|v| if sort { sorted(v) } else { v })
                .map_err(|e| e.to_string());
            (line.clone(), r)
        })
        .collect()
}

/// BITFIELD at the edges of every width, in every OVERFLOW mode, at an
/// offset that straddles bytes.
fn overflow_edges() -> Vec<String> {
    let mut s = Vec::new();
    let i64_range = |v: i128| (i128::from(i64::MIN)..=i128::from(i64::MAX)).contains(&v);
    for mode in ["WRAP", "SAT", "FAIL"] {
        for bits in [1u32, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 62, 63, 64] {
            let max = (1i128 << (bits - 1)) - 1;
            let min = -(1i128 << (bits - 1));
            let t = format!("i{bits} 3");
            let mut ops = vec![format!("BITFIELD ov OVERFLOW {mode}")];
            ops.push(format!("SET {t} {max} INCRBY {t} 1 GET {t}"));
            ops.push(format!("SET {t} {min} INCRBY {t} -1 GET {t}"));
            for v in [max + 1, min - 1, max * 2, min * 2 + 1] {
                if i64_range(v) {
                    ops.push(format!("SET {t} {v}"));
                }
            }
            ops.push(format!(
                "INCRBY {t} 9223372036854775807 INCRBY {t} -9223372036854775808"
            ));
            ops.push(format!(
                "SET {t} 9223372036854775807 SET {t} -9223372036854775808 SET {t} -1"
            ));
            ops.push(format!("SET {t} 0 INCRBY {t} {max} INCRBY {t} {max} INCRBY {t} {min} INCRBY {t} {min} INCRBY {t} {min}"));
            s.push(ops.join(" "));
            s.push("GET ov".into());
            s.push(format!("BITFIELD ov OVERFLOW {mode} SET i{bits} #2 {max} INCRBY i{bits} #2 1 GET i{bits} #2 GET u8 #0"));
        }
        for bits in [1u32, 2, 7, 8, 9, 16, 31, 32, 33, 62, 63] {
            let max = (1i128 << bits) - 1;
            let t = format!("u{bits} 5");
            let mut ops = vec![format!("BITFIELD ov OVERFLOW {mode}")];
            ops.push(format!("SET {t} {max} INCRBY {t} 1 GET {t}"));
            ops.push(format!("SET {t} 0 INCRBY {t} -1 GET {t}"));
            if i64_range(max + 1) {
                ops.push(format!("SET {t} {}", max + 1));
            }
            ops.push(format!("SET {t} -1 SET {t} -9223372036854775808"));
            ops.push(format!(
                "INCRBY {t} 9223372036854775807 INCRBY {t} -9223372036854775808"
            ));
            ops.push(format!(
                "SET {t} 1 INCRBY {t} {max} INCRBY {t} -{max} INCRBY {t} -2"
            ));
            s.push(ops.join(" "));
            s.push("GET ov".into());
        }
    }
    s
}

fn script() -> Vec<String> {
    let text_a: String = (0..300)
        .map(|i| (b'a' + ((i * 7 + i / 13) % 5) as u8) as char)
        .collect();
    let text_b: String = (0..250)
        .map(|i| (b'a' + ((i * 3 + i / 7) % 5) as u8) as char)
        .collect();
    let wide = "x".repeat(600);
    let mut s: Vec<String> = [
        // SETBIT and GETBIT
        "SETBIT b 7 1",
        "GETBIT b 7",
        "GETBIT b 6",
        "GETBIT b 100",
        "GETBIT missing 0",
        "GET b",
        "SETBIT b 7 0",
        "SETBIT b 7 0",
        "GET b",
        "SETBIT b 100 1",
        "STRLEN b",
        "GETBIT b 100",
        "GET b",
        "OBJECT ENCODING b",
        "TYPE b",
        "SETBIT b 0 1",
        "SETBIT b 0 1",
        "GET b",
        // offsets and bits
        "SETBIT b -1 1",
        "SETBIT b x 1",
        "SETBIT b \"\" 1",
        "SETBIT b 1 2",
        "SETBIT b 1 -1",
        "SETBIT b 1 x",
        "SETBIT b 1 01",
        "SETBIT b 1 -0",
        "SETBIT b 1 \"\"",
        "SETBIT b 4294967296 1",
        "SETBIT b 99999999999 2",
        "SETBIT b 99999999999999999999 2",
        "SETBIT b 9223372036854775807 1",
        "SETBIT b 1.5 1",
        "SETBIT b +1 1",
        "SETBIT b 01 1",
        "SETBIT b #1 1",
        "SETBIT b 1\\x00junk 1",
        "GETBIT b 1",
        "GETBIT b -1",
        "GETBIT b x",
        "GETBIT b 4294967296",
        "GETBIT b #1",
        "GETBIT missing -1",
        "SETBIT b 1",
        "GETBIT b",
        "SETBIT b 1 1 1",
        "GETBIT b 1 1",
        "GET b",
        // integer-encoded strings are their digits
        "SET n 12345",
        "OBJECT ENCODING n",
        "GETBIT n 2",
        "GETBIT n 3",
        "GETBIT n 39",
        "GETBIT n 40",
        "BITCOUNT n",
        "BITPOS n 1",
        "BITPOS n 0",
        "OBJECT ENCODING n",
        "SETBIT n 6 1",
        "GET n",
        "OBJECT ENCODING n",
        "SET n2 -1",
        "SETBIT n2 0 0",
        "OBJECT ENCODING n2",
        "GET n2",
        "SET e abc",
        "OBJECT ENCODING e",
        "GETBIT e 1",
        "OBJECT ENCODING e",
        "SETBIT e 0 0",
        "OBJECT ENCODING e",
        "SET t x EX 100",
        "SETBIT t 1 1",
        "TTL t",
        "GET t",
        // wrong types
        "HSET h f v",
        "SADD s x",
        "RPUSH l x",
        "SETBIT h 0 1",
        "SETBIT s 0 1",
        "SETBIT l 0 1",
        "SETBIT h x 1",
        "SETBIT h 0 5",
        "GETBIT h 0",
        "GETBIT l x",
        "BITCOUNT h",
        "BITCOUNT s 0 1 BOGUS",
        "BITPOS h 1",
        "BITPOS h 5",
        "BITPOS l 1 x",
        "BITOP AND d h",
        "BITOP AND d b h",
        "BITOP NOT d s",
        "BITOP OR h b",
        "TYPE h",
        "BITFIELD h GET u8 0",
        "BITFIELD h SET u8 0 1",
        "BITFIELD h",
        "BITFIELD h SET u8 x 1",
        "BITFIELD_RO h GET u8 0",
        "BITFIELD_RO h SET u8 0 1",
        "LCS h b",
        "LCS b h",
        "LCS h missing BOGUS",
        "LCS s l LEN IDX",
        "HGET h f",
        // BITCOUNT
        "SET f foobar",
        "BITCOUNT f",
        "BITCOUNT f 0 0",
        "BITCOUNT f 1 1",
        "BITCOUNT f 1 1 BYTE",
        "BITCOUNT f 1 1 byte",
        "BITCOUNT f 5 30 BIT",
        "BITCOUNT f 5 30 bit",
        "BITCOUNT f 0 -1",
        "BITCOUNT f -2 -1",
        "BITCOUNT f -100 100",
        "BITCOUNT f -100 -50",
        "BITCOUNT f 100 200",
        "BITCOUNT f 3 1",
        "BITCOUNT f -1 -2",
        "BITCOUNT f -1 -2 FOO",
        "BITCOUNT f 1 -2 FOO",
        "BITCOUNT f 0 -1 BIT",
        "BITCOUNT f -5 -1 BIT",
        "BITCOUNT f 47 47 BIT",
        "BITCOUNT f 46 100 BIT",
        "BITCOUNT f 0 -1 BOGUS",
        "BITCOUNT f 0",
        "BITCOUNT f 0 1 BIT extra",
        "BITCOUNT f a b",
        "BITCOUNT f 0 b",
        "BITCOUNT f a 0 FOO",
        "BITCOUNT f 9223372036854775807 -9223372036854775808",
        "BITCOUNT f -9223372036854775808 9223372036854775807 BIT",
        "BITCOUNT f -9223372036854775808 -1 BIT",
        "BITCOUNT missing",
        "BITCOUNT missing 0",
        "BITCOUNT missing a b c",
        "BITCOUNT missing 0 1 FOO",
        "BITCOUNT n2 0 -1",
        "SET empty \"\"",
        "BITCOUNT empty",
        "BITCOUNT empty 0 -1",
        "BITCOUNT empty 0 -1 BIT",
        "BITCOUNT empty 0 0 FOO",
        "BITPOS empty 0",
        "BITPOS empty 1",
        "BITPOS empty 0 0",
        "BITPOS empty 0 0 -1 BIT",
        "GETBIT empty 0",
        "BITFIELD empty GET u8 0",
        // BITPOS
        "SET p \\xff\\xf0\\x00",
        "BITPOS p 0",
        "BITPOS p 1",
        "BITPOS p 0 1",
        "BITPOS p 0 2 -1",
        "BITPOS p 1 2",
        "BITPOS p 1 1",
        "BITPOS p 1 7 15 BIT",
        "BITPOS p 0 7 15 BIT",
        "BITPOS p 0 0 11 BIT",
        "BITPOS p 0 0 12 BIT",
        "BITPOS p 0 0 -1 BIT",
        "BITPOS p 0 -12 -1 BIT",
        "BITPOS p 1 -1 -1",
        "BITPOS p 1 -3 -2 BIT",
        "BITPOS p 1 -100 -90",
        "BITPOS p 0 3 1",
        "BITPOS p 1 9223372036854775807",
        "BITPOS p 0 -9223372036854775808",
        "BITPOS p 0 -9223372036854775808 9223372036854775807 BIT",
        "SET ones \\xff\\xff\\xff",
        "BITPOS ones 0",
        "BITPOS ones 0 1",
        "BITPOS ones 0 1 2",
        "BITPOS ones 0 0 -1",
        "BITPOS ones 0 3 BIT",
        "BITPOS ones 0 5 20 BIT",
        "BITPOS ones 0 5 23 BIT",
        "BITPOS ones 0 5 100 BIT",
        "BITPOS ones 1 24",
        "BITPOS ones 0 24",
        "BITPOS ones 0 2",
        "BITPOS ones 0 -1",
        "BITPOS ones 0 100 200",
        "BITPOS ones 1 0 -1 BIT",
        "SET zeros \\x00\\x00",
        "BITPOS zeros 1",
        "BITPOS zeros 0",
        "BITPOS zeros 1 1 1",
        "BITPOS zeros 0 9 BIT",
        "BITPOS zeros 1 0 -1 BIT",
        "SET long \\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x7f",
        "BITPOS long 1",
        "BITPOS long 1 1",
        "BITPOS long 1 3 -3 BIT",
        "BITPOS long 0 21",
        "BITPOS long 0 21 -2",
        "BITPOS long 0 21 -1",
        "BITPOS long 0 170 -2 BIT",
        "BITPOS long 0 170 -1 BIT",
        "BITCOUNT long",
        "BITCOUNT long 3 -3 BIT",
        "BITPOS missing 0",
        "BITPOS missing 1",
        "BITPOS missing 1 x",
        "BITPOS missing 1 0 1 FOO",
        "BITPOS missing 2",
        "BITPOS missing x",
        "BITPOS p 2",
        "BITPOS p x",
        "BITPOS p -1",
        "BITPOS p 01",
        "BITPOS p 1 x",
        "BITPOS p 1 0 x",
        "BITPOS p 1 x 0 FOO",
        "BITPOS p 1 0 1 FOO",
        "BITPOS p 1 0 x FOO",
        "BITPOS p 1 0 1 BIT extra",
        "BITPOS p 1 0 1 bit",
        "BITPOS p 1 0 1 byte",
        "BITPOS p",
        // BITOP
        "SET a1 \\x0f\\xf0",
        "SET a2 \\xff\\x00\\xaa",
        "BITOP AND r a1 a2",
        "GET r",
        "OBJECT ENCODING r",
        "BITOP OR r a1 a2",
        "GET r",
        "BITOP XOR r a1 a2",
        "GET r",
        "BITOP XOR r a1 a2 a1",
        "GET r",
        "BITOP NOT r a2",
        "GET r",
        "BITOP and r a1 missing",
        "GET r",
        "BITOP or r missing a1 missing",
        "GET r",
        "BITOP AND r missing a1",
        "GET r",
        "BITOP Xor r a2",
        "GET r",
        "BITOP NOT r missing",
        "EXISTS r",
        "BITOP AND r missing missing2",
        "EXISTS r",
        "BITOP OR r empty",
        "EXISTS r",
        "BITOP NOT r a1 a2",
        "BITOP NOT r",
        "BITOP FOO r a1",
        "BITOP ANDX r a1",
        "BITOP AND r",
        "BITOP AND",
        "BITOP",
        "SET r x EX 100",
        "BITOP OR r a1",
        "TTL r",
        "OBJECT ENCODING r",
        "HSET hr f v",
        "BITOP XOR hr a1",
        "TYPE hr",
        "GET hr",
        "HSET hr2 f v",
        "BITOP AND hr2 missing",
        "EXISTS hr2",
        "BITOP OR r n a1",
        "GET r",
        "BITOP AND r a1 h",
        "GET r",
        "BITOP AND a1 a1 a2",
        "GET a1",
        // BITFIELD
        "BITFIELD bf SET i8 0 100 GET i8 0 INCRBY i8 0 100",
        "BITFIELD bf OVERFLOW SAT INCRBY i8 0 100 INCRBY i8 0 -300",
        "BITFIELD bf OVERFLOW FAIL INCRBY i8 0 -1 INCRBY i8 0 -1",
        "GET bf",
        "BITFIELD bf GET u4 0 GET u4 4 GET i4 0 GET i4 4",
        "BITFIELD bf SET u8 #1 255 GET u8 #1 GET u16 0 GET i16 0",
        "BITFIELD bf INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1 GET u2 100 GET u4 100",
        "BITFIELD bf overflow wrap incrby u2 104 5 get u2 104",
        "STRLEN bf",
        "GET bf",
        "BITFIELD bf GET i64 0 GET u63 0 GET i64 1 GET u63 1 GET i64 200",
        "BITFIELD bf SET i64 0 -2 GET u63 0 GET u63 1 GET i1 0 GET u1 0",
        "GET bf",
        "OBJECT ENCODING bf",
        "BITFIELD missing GET i8 0 GET u8 100",
        "EXISTS missing",
        "BITFIELD nf OVERFLOW FAIL INCRBY u2 0 5",
        "EXISTS nf",
        "GET nf",
        "BITFIELD nf2 OVERFLOW FAIL SET u2 100 4",
        "STRLEN nf2",
        "BITFIELD bf",
        "BITFIELD missing",
        "BITFIELD bf GET",
        "BITFIELD bf GET i8",
        "BITFIELD bf GET i8 0 SET",
        "BITFIELD bf GET i8 0 SET i8 0",
        "BITFIELD bf SET i8 0",
        "BITFIELD bf INCRBY i8 0",
        "BITFIELD bf FOO",
        "BITFIELD bf OVERFLOW",
        "BITFIELD bf OVERFLOW BAD GET i8 0",
        "BITFIELD bf GET i8 0 OVERFLOW BAD",
        "BITFIELD bf OVERFLOW sat OVERFLOW fail GET i8 0",
        "BITFIELD bf GET u64 0",
        "BITFIELD bf GET i65 0",
        "BITFIELD bf GET i0 0",
        "BITFIELD bf GET u0 0",
        "BITFIELD bf GET I8 0",
        "BITFIELD bf GET U8 0",
        "BITFIELD bf GET x8 0",
        "BITFIELD bf GET i 0",
        "BITFIELD bf GET \"\" 0",
        "BITFIELD bf GET i08 0",
        "BITFIELD bf GET u-1 0",
        "BITFIELD bf GET i+8 0",
        "BITFIELD bf GET i8\\x00x 0",
        "BITFIELD bf GET i8 -1",
        "BITFIELD bf GET i8 x",
        "BITFIELD bf GET i8 #-1",
        "BITFIELD bf GET i8 ##1",
        "BITFIELD bf GET i8 #x",
        "BITFIELD bf GET i8 #",
        "BITFIELD bf GET i8 #0 GET i8 #1 GET u3 #3",
        "BITFIELD bf GET i8 4294967288",
        "BITFIELD bf GET i8 4294967296",
        "BITFIELD bf GET i8 #536870911",
        "BITFIELD bf GET i8 #536870912",
        "BITFIELD bf GET i64 #4294967295",
        "BITFIELD bf GET i8 99999999999999999999",
        "BITFIELD bf SET i8 0 x",
        "BITFIELD bf INCRBY i8 0 1.5",
        "BITFIELD bf SET i8 0 9223372036854775808",
        "BITFIELD bf SET i8 0 \"\"",
        "BITFIELD bf GET i8 0 SET i8 x 1",
        "BITFIELD bf GET i8 99999999999 GET x 0",
        "BITFIELD bf SET i8 0 1 GET x 0",
        "GET bf",
        "BITFIELD_RO bf GET i8 0 GET u4 4",
        "BITFIELD_RO bf",
        "BITFIELD_RO bf SET i8 0 1",
        "BITFIELD_RO bf INCRBY i8 0 1",
        "BITFIELD_RO bf GET i8 0 INCRBY i8 0 1",
        "BITFIELD_RO bf GET i8 0 OVERFLOW SAT",
        "BITFIELD_RO bf OVERFLOW FAIL GET i8 0",
        "BITFIELD_RO bf OVERFLOW FOO GET i8 0",
        "BITFIELD_RO bf FOO",
        "BITFIELD_RO missing GET i8 0",
        "BITFIELD_RO missing SET i8 0 1",
        "BITFIELD_RO bf SET i8 x 1",
        "BITFIELD_RO bf SET x8 0 1",
        "EXISTS missing",
        "GET bf",
        "BITFIELD n GET u8 0 GET i16 8",
        "BITFIELD n SET u8 0 50",
        "GET n",
        "OBJECT ENCODING n",
        "SET n3 100",
        "BITFIELD n3 GET u8 0",
        "BITFIELD_RO n3 GET u8 0",
        "OBJECT ENCODING n3",
        "SET n4 100",
        "BITFIELD n4 SET u8 0 49",
        "OBJECT ENCODING n4",
        "SET t2 v EX 100",
        "BITFIELD t2 SET u8 0 1",
        "TTL t2",
        // LCS
        "SET la ohmytext",
        "SET lb mynewtext",
        "LCS la lb",
        "LCS la lb LEN",
        "LCS la lb len",
        "LCS la lb IDX",
        "LCS la lb idx",
        "LCS la lb IDX MINMATCHLEN 4",
        "LCS la lb IDX MINMATCHLEN 4 WITHMATCHLEN",
        "LCS la lb IDX WITHMATCHLEN",
        "LCS la lb WITHMATCHLEN IDX",
        "LCS la lb IDX MINMATCHLEN -5",
        "LCS la lb IDX MINMATCHLEN 0",
        "LCS la lb IDX MINMATCHLEN 2 MINMATCHLEN 5",
        "LCS la lb IDX MINMATCHLEN 100",
        "LCS la lb MINMATCHLEN 4",
        "LCS la lb WITHMATCHLEN",
        "LCS la lb LEN WITHMATCHLEN MINMATCHLEN 3",
        "LCS la lb MINMATCHLEN x",
        "LCS la lb MINMATCHLEN",
        "LCS la lb MINMATCHLEN 9223372036854775808",
        "LCS la lb LEN IDX",
        "LCS la lb idx len",
        "LCS la lb BOGUS",
        "LCS la lb LEN LEN",
        "LCS la lb IDX IDX",
        "LCS la missing",
        "LCS missing la",
        "LCS missing missing2",
        "LCS missing missing2 IDX",
        "LCS missing missing2 LEN",
        "LCS missing missing2 BOGUS",
        "LCS la la",
        "LCS la la IDX WITHMATCHLEN",
        "LCS la la LEN",
        "LCS n n2",
        "LCS n n2 IDX",
        "LCS la n",
        "LCS empty la IDX",
        "SET bin1 \\x00\\x01\\x02\\xff\\x00\\x01",
        "SET bin2 \\x01\\xff\\x00\\x02\\x00",
        "LCS bin1 bin2",
        "LCS bin1 bin2 IDX WITHMATCHLEN",
        "SET ta TEXTA",
        "SET tb TEXTB",
        "LCS ta tb",
        "LCS ta tb LEN",
        "LCS ta tb IDX WITHMATCHLEN",
        "LCS ta tb IDX MINMATCHLEN 3 WITHMATCHLEN",
        "LCS tb ta IDX MINMATCHLEN 2",
        "SET aaa aaaaaaaaaa",
        "SET aa aaaa",
        "LCS aaa aa IDX WITHMATCHLEN",
        "LCS aa aaa IDX WITHMATCHLEN",
        // the string length limit, at 1 MB
        "CONFIG SET proto-max-bulk-len 1mb",
        "SETBIT big 8388607 1",
        "STRLEN big",
        "SETBIT big 8388608 1",
        "SETBIT fresh 8388608 1",
        "EXISTS fresh",
        "GETBIT big 8388608",
        "GETBIT big 8388607",
        "GETBIT missing 8388608",
        "BITCOUNT big",
        "BITPOS big 1",
        "BITPOS big 1 -1",
        "BITPOS big 0 -1",
        "BITFIELD big GET u8 8388600 GET u4 8388604",
        "BITFIELD big GET u8 8388608",
        "BITFIELD big SET u8 #1048575 3",
        "BITFIELD big2 SET i8 8388600 1",
        "STRLEN big2",
        "BITFIELD big2 GET i8 #1048576",
        "BITOP NOT big3 big",
        "BITCOUNT big3",
        "SET wa WIDE",
        "SET wb WIDE",
        "LCS wa wb LEN",
        "LCS wa wb IDX",
        "LCS big missing",
        "LCS missing big LEN",
        "LCS la lb",
        "CONFIG SET proto-max-bulk-len 512mb",
        "LCS wa wb LEN",
        "DEL big big2 big3",
        // WATCH: a SETBIT or BITFIELD that changes nothing is no write
        "SET w a",
        "WATCH w",
        "SETBIT w 0 0",
        "BITFIELD w SET u8 0 97 GET u8 0",
        "BITFIELD w GET u2 0",
        "MULTI",
        "PING",
        "EXEC",
        "WATCH w",
        "SETBIT w 0 1",
        "MULTI",
        "PING",
        "EXEC",
        "WATCH w",
        "BITFIELD w INCRBY u2 0 1",
        "MULTI",
        "PING",
        "EXEC",
        "WATCH w",
        "BITOP OR w w",
        "MULTI",
        "PING",
        "EXEC",
        // transactions
        "MULTI",
        "SETBIT m 1 1",
        "GETBIT m 1",
        "BITCOUNT m",
        "BITPOS m 1",
        "BITOP NOT m2 m",
        "BITFIELD m INCRBY u8 0 1",
        "BITFIELD_RO m GET u8 0",
        "BITFIELD m GET u8 0 OVERFLOW BAD",
        "SETBIT m -1 1",
        "LCS m m2",
        "LCS m m2 IDX",
        "EXEC",
        "GET m2",
        // arity
        "SETBIT b 1",
        "GETBIT b",
        "BITCOUNT",
        "BITPOS b",
        "BITOP AND d",
        "BITFIELD",
        "BITFIELD_RO",
        "LCS a",
        // key positions (routing, CROSSSLOT, ACL)
        "COMMAND GETKEYS BITOP AND d a b",
        "COMMAND GETKEYS BITOP NOT d a",
        "COMMAND GETKEYS LCS a b",
        "COMMAND GETKEYS BITFIELD k GET i8 0",
        "COMMAND GETKEYS SETBIT k 1 1",
        "COMMAND GETKEYS BITCOUNT k 0 1",
        "sort: ACL CAT bitmap",
        // read and write key permissions (Redis 7.0's key specs)
        "ACL SETUSER wo on nopass %W~w* +@all",
        "ACL SETUSER ro on nopass %R~w* +@all",
        "ACL SETUSER mix on nopass %W~d* %R~s* +@all",
        "ACL DRYRUN mix bitop and d s1 s2",
        "ACL DRYRUN mix bitop and s1 d",
        "ACL DRYRUN mix bitop not d s1",
        "ACL DRYRUN mix setbit d 1 1",
        "ACL DRYRUN mix setbit s 1 1",
        "ACL DRYRUN mix getbit s 1",
        "ACL DRYRUN mix bitfield s get i8 0",
        "ACL DRYRUN mix bitfield s get i8 0 set i8 0 1",
        "ACL DRYRUN mix bitfield d set i8 0 1",
        "ACL DRYRUN mix bitfield s get i8",
        "ACL DRYRUN mix bitfield_ro s get i8 0",
        "ACL DRYRUN mix lcs s1 s2",
        "ACL DRYRUN mix lcs s1 d",
        "ACL DRYRUN wo setbit w 1 1",
        "ACL DRYRUN ro setbit w 1 1",
        "ACL DRYRUN wo getbit w 1",
        "ACL DRYRUN ro getbit w 1",
        "ACL DRYRUN wo bitcount w",
        "ACL DRYRUN ro bitcount w",
        "ACL DRYRUN wo bitpos w 1",
        "ACL DRYRUN ro bitpos w 1",
        "ACL DRYRUN wo bitop and w w",
        "ACL DRYRUN ro bitop and w w",
        "ACL DRYRUN wo bitop and w2 w",
        "ACL DRYRUN ro bitop and w2 w",
        "ACL DRYRUN wo bitop and w w2",
        "ACL DRYRUN ro bitop and w w2",
        "ACL DRYRUN wo bitfield w get i8 0",
        "ACL DRYRUN ro bitfield w get i8 0",
        "ACL DRYRUN wo bitfield w set i8 0 1",
        "ACL DRYRUN ro bitfield w set i8 0 1",
        "ACL DRYRUN wo bitfield w overflow sat get i8 0",
        "ACL DRYRUN ro bitfield w overflow sat get i8 0",
        "ACL DRYRUN wo bitfield w incrby i8 0 1",
        "ACL DRYRUN ro bitfield w incrby i8 0 1",
        "ACL DRYRUN wo bitfield w get",
        "ACL DRYRUN ro bitfield w get",
        "ACL DRYRUN wo bitfield w",
        "ACL DRYRUN ro bitfield w",
        "ACL DRYRUN wo bitfield_ro w get i8 0",
        "ACL DRYRUN ro bitfield_ro w get i8 0",
        "ACL DRYRUN wo lcs w w",
        "ACL DRYRUN ro lcs w w",
        "ACL DRYRUN wo lcs w w2",
        "ACL DRYRUN ro lcs w w2",
        // key commands on bit strings
        "SETBIT kc 3 1",
        "COPY kc kc2",
        "GET kc2",
        "RENAME kc2 kc3",
        "GETBIT kc3 3",
        "EXPIRE kc3 100",
        "SETBIT kc3 4 1",
        "TTL kc3",
        "APPEND kc3 x",
        "GET kc3",
        "SETRANGE kc3 5 yz",
        "GETBIT kc3 40",
        "INCR kc",
    ]
    .iter()
    .map(|l| l.to_string())
    .collect();
    for l in s.iter_mut() {
        *l = l
            .replace("TEXTA", &text_a)
            .replace("TEXTB", &text_b)
            .replace("WIDE", &wide);
    }
    s.extend(overflow_edges());
    s
}

#[test]
fn bitmap_commands_answer_like_redis() {
    common::same_replies_as_redis(&script(), play, false);
}

/// The same script in RESP3 (LCS IDX answers a map; BITFIELD's FAIL a
/// RESP3 null).
#[test]
fn bitmap_commands_answer_like_redis_in_resp3() {
    let want = common::same_replies_as_redis(&script(), play, true);
    assert!(
        want.iter().any(|(_, r)| matches!(r, Ok(Value::Map(_)))),
        "the reference speaks RESP3"
    );
}

/// Where cairn differs on purpose: a BITFIELD write may not grow a
/// string past `proto-max-bulk-len` (Redis allows up to 8 bytes more),
/// and LCS refuses more than 2^27 table cells whatever the limit.
#[test]
fn growth_and_lcs_work_are_bounded() {
    let cairn = Server::start();
    let mut c = connect(&cairn.url());
    let cmd = |c: &mut redis::Connection, args: &[&str]| common::cmd(c, args);
    assert!(cmd(&mut c, &["CONFIG", "SET", "proto-max-bulk-len", "1mb"]).is_ok());
    // A field starting at the last byte and ending past it.
    let err =
        cmd(&mut c, &["BITFIELD", "g", "SET", "i16", "8388607", "1"]).expect_err("past the limit");
    assert!(err.contains("string exceeds maximum allowed size"), "{err}");
    assert_eq!(cmd(&mut c, &["EXISTS", "g"]), Ok(Value::Int(0)));
    // Inside the limit it is fine; then a field over the last byte
    // would grow it.
    assert!(cmd(&mut c, &["BITFIELD", "g", "SET", "i8", "8388600", "1"]).is_ok());
    assert_eq!(cmd(&mut c, &["STRLEN", "g"]), Ok(Value::Int(1 << 20)));
    let err = cmd(
        &mut c,
        &[
            "BITFIELD", "g", "GET", "u8", "0", "INCRBY", "u9", "8388600", "1",
        ],
    )
    .expect_err("past the limit");
    assert!(err.contains("string exceeds maximum allowed size"), "{err}");
    assert_eq!(
        cmd(&mut c, &["BITFIELD", "g", "GET", "i8", "8388600"]),
        Ok(Value::Array(vec![Value::Int(1)])),
        "nothing written"
    );
    assert!(cmd(&mut c, &["CONFIG", "SET", "proto-max-bulk-len", "1gb"]).is_ok());
    // 12,000 x 12,000 is 144M cells: within Redis' limit at 1 GB (576 MB
    // of table), over cairn's 2^27.
    let a = "a".repeat(12_000);
    assert!(cmd(&mut c, &["SET", "x", &a]).is_ok());
    assert!(cmd(&mut c, &["SET", "y", &a]).is_ok());
    let err = cmd(&mut c, &["LCS", "x", "y", "LEN"]).expect_err("too much work");
    assert!(err.contains("134217728"), "{err}");
    // Just under the bound works (11,000^2 < 2^27); IDX keeps one bit a
    // cell, shown here on a smaller table.
    let b = "ab".repeat(5_500);
    assert!(cmd(&mut c, &["SET", "y", &b]).is_ok());
    assert!(cmd(&mut c, &["SET", "x", &a[..11_000]]).is_ok());
    let started = std::time::Instant::now();
    assert_eq!(
        cmd(&mut c, &["LCS", "x", "y", "LEN"]),
        Ok(Value::Int(5_500))
    );
    eprintln!("LCS LEN of 121M cells: {:?}", started.elapsed());
    assert!(cmd(&mut c, &["SET", "x", &a[..2_000]]).is_ok());
    match cmd(&mut c, &["LCS", "x", "y", "IDX"]) {
        Ok(Value::Array(items)) => assert_eq!(items.last(), Some(&Value::Int(2_000))),
        other => panic!("{other:?}"),
    }
}
