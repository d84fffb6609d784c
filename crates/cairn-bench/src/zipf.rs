//! A small deterministic PRNG and a Zipf sampler.
//!
//! The sampler is Hörmann & Derflinger's rejection-inversion method
//! ("Rejection-inversion to generate variates from monotone discrete
//! distributions", 1996), the same algorithm Apache Commons uses: O(1) memory
//! and O(1) expected time per sample, for any key-space size.

/// xoshiro256** seeded through splitmix64: fast, and identical on every run
/// with the same seed, which is what a side-by-side comparison needs.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf distribution over ranks 1..=n with P(k) proportional to 1 / k^s.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> anyhow::Result<Zipf> {
        anyhow::ensure!(n >= 1, "Zipf needs at least one element");
        anyhow::ensure!(s > 0.0 && s.is_finite(), "Zipf exponent must be positive");
        let mut z = Zipf {
            n: n as f64,
            s,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            threshold: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(z.n + 0.5);
        z.threshold = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        Ok(z)
    }

    /// A rank in 1..=n; rank 1 is the most popular.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        // The acceptance rate is above 90% for any n and s; the bound only
        // guards against a pathological floating-point state.
        for _ in 0..1_000 {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
        1
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.s) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (helper1(t) * x).exp()
    }
}

/// ln(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (exp(x) - 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(n: u64, s: f64) {
        let z = Zipf::new(n, s).expect("valid");
        let mut rng = Rng::new(42);
        let samples = 2_000_000u64;
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..samples {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k), "rank {k} out of range");
            counts[k as usize] += 1;
        }
        let norm: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).sum();
        for k in 1..=n.min(20) {
            let expected = 1.0 / (k as f64).powf(s) / norm;
            let got = counts[k as usize] as f64 / samples as f64;
            let tolerance = 5.0 * (expected * (1.0 - expected) / samples as f64).sqrt() + 1e-4;
            assert!(
                (got - expected).abs() < tolerance,
                "n={n} s={s} rank {k}: got {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn matches_exact_pmf() {
        check(1, 0.99);
        check(10, 0.99);
        check(1_000, 0.99);
        check(100, 1.0);
        check(50, 0.5);
        check(1_000, 1.5);
    }

    #[test]
    fn same_seed_same_sequence() {
        let z = Zipf::new(1_000_000, 0.99).expect("valid");
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1_000 {
            assert_eq!(z.sample(&mut a), z.sample(&mut b));
        }
    }

    #[test]
    fn uniform_in_unit_interval() {
        let mut rng = Rng::new(1);
        for _ in 0..100_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
