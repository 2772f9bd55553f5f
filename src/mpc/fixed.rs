//! Two's-complement fixed-point encoding of reals into Z_2^64.

use super::ring::RingTensor;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Fixed-point format: a real `x` is stored as `round(x * 2^frac_bits) mod 2^64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedPoint {
    pub frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        Self { frac_bits: 16 }
    }
}

impl FixedPoint {
    pub fn new(frac_bits: u32) -> Self {
        Self { frac_bits }
    }

    /// `2^frac_bits` as a real.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    pub fn encode(&self, x: f64) -> u64 {
        (x * self.scale()).round() as i64 as u64
    }

    pub fn decode(&self, v: u64) -> f64 {
        v as i64 as f64 / self.scale()
    }

    pub fn encode_tensor(&self, shape: &[usize], values: &[f64]) -> Result<RingTensor> {
        RingTensor::new(shape, values.iter().map(|&x| self.encode(x)).collect())
    }

    pub fn decode_tensor(&self, t: &RingTensor) -> Vec<f64> {
        t.data().iter().map(|&v| self.decode(v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_within_half_ulp() {
        let fp = FixedPoint::default();
        for x in [0.0, 1.5, -3.25, 123.456, -0.00001, -700.1] {
            assert!((fp.decode(fp.encode(x)) - x).abs() <= 0.5 / fp.scale());
        }
        let fp = FixedPoint::new(20);
        assert_eq!(fp.decode(fp.encode(-2.0)), -2.0);
    }
}
