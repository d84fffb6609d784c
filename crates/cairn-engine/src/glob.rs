//! Redis' glob-style pattern matching (`stringmatchlen`): `*`, `?`,
//! `[abc]`, `[^a]`, `[a-z]`, and `\` escapes.
//!
//! Iterative with one backtrack point (the last `*`), so the cost is
//! O(pattern × subject) even for hostile patterns like `*a*a*a*…b`.

pub fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if p.get(pi) == Some(&b'*') {
            star = Some((pi, si));
            pi += 1;
            continue;
        }
        if let Some(next) = match_one(p, pi, s[si]) {
            pi = next;
            si += 1;
            continue;
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// If the pattern token at `pi` matches byte `c`, the index after it.
fn match_one(p: &[u8], pi: usize, c: u8) -> Option<usize> {
    match *p.get(pi)? {
        b'?' => Some(pi + 1),
        b'\\' if pi + 1 < p.len() => (p[pi + 1] == c).then_some(pi + 2),
        b'[' => {
            let mut i = pi + 1;
            let not = p.get(i) == Some(&b'^');
            if not {
                i += 1;
            }
            let mut hit = false;
            while i < p.len() && p[i] != b']' {
                if p[i] == b'\\' && i + 1 < p.len() {
                    hit |= p[i + 1] == c;
                    i += 2;
                } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
                    let (lo, hi) = if p[i] <= p[i + 2] {
                        (p[i], p[i + 2])
                    } else {
                        (p[i + 2], p[i])
                    };
                    hit |= c >= lo && c <= hi;
                    i += 3;
                } else {
                    hit |= p[i] == c;
                    i += 1;
                }
            }
            // An unterminated class ends at the end of the pattern.
            let next = (i + 1).min(p.len());
            (hit != not).then_some(next)
        }
        lit => (lit == c).then_some(pi + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn redis_glob_examples() {
        assert!(m(b"h?llo", b"hello"));
        assert!(m(b"h*llo", b"heeeello"));
        assert!(m(b"h*llo", b"hllo"));
        assert!(m(b"h[ae]llo", b"hallo"));
        assert!(!m(b"h[ae]llo", b"hillo"));
        assert!(m(b"h[^e]llo", b"hallo"));
        assert!(!m(b"h[^e]llo", b"hello"));
        assert!(m(b"h[a-b]llo", b"hbllo"));
        assert!(m(b"*", b""));
        assert!(m(b"a\\*b", b"a*b"));
        assert!(!m(b"a\\*b", b"axb"));
        assert!(m(b"key:*", b"key:123"));
        assert!(!m(b"key:?", b"key:12"));
        assert!(m(b"*a*b*", b"xxaxxbxx"));
        assert!(!m(b"*a*b", b"xxaxxbxxc"));
        assert!(!m(b"abc", b"ab"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let p = b"*a*a*a*a*a*a*a*a*a*a*a*b".to_vec();
        let s = vec![b'a'; 10_000];
        assert!(!m(&p, &s));
    }
}
