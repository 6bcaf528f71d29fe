//! Record keys (`--keys uniform:N | zipf:N[:S]`) and where they go.
//!
//! A keyed record goes to the partition Kafka's default partitioner picks:
//! `murmur2(key) & 0x7fffffff % partitions`, so the broker sees the same
//! spread a Java (or librdkafka `murmur2_random`) producer would make. The
//! hash is the project's `ringstream_client::murmur2`, tested there against
//! Kafka's own UtilsTest vectors and again here.
//!
//! Keys are drawn from a precomputed cumulative weight table (uniform: 1
//! per key; Zipf: rank^-S), one table per partition leader holding only the
//! keys whose partition that leader serves. A producer connection draws from
//! its leader's table, so on several brokers each connection sends exactly
//! the keys of its own partitions, at the share of the traffic those keys
//! carry. The table is bounded by `keys_max`.

use crate::limits::{key_bytes_max, keys_max, zipf_exponent_max};

/// Default Zipf exponent (YCSB's).
pub const zipf_exponent_default: f64 = 0.99;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeySpec {
    None,
    Uniform { keys: u32 },
    Zipf { keys: u32, exponent: f64 },
}

impl KeySpec {
    pub fn keys(&self) -> u32 {
        match *self {
            KeySpec::None => 0,
            KeySpec::Uniform { keys } | KeySpec::Zipf { keys, .. } => keys,
        }
    }

    /// The flag's text, for the JSON parameters.
    pub fn label(&self) -> String {
        match *self {
            KeySpec::None => "none".into(),
            KeySpec::Uniform { keys } => format!("uniform:{keys}"),
            KeySpec::Zipf { keys, exponent } => format!("zipf:{keys}:{exponent}"),
        }
    }

    /// Weight of the key of rank `index + 1`.
    fn weight(&self, index: u32) -> f64 {
        match *self {
            KeySpec::None => 0.0,
            KeySpec::Uniform { .. } => 1.0,
            KeySpec::Zipf { exponent, .. } => (f64::from(index) + 1.0).powf(-exponent),
        }
    }
}

/// `none`, `uniform:N` or `zipf:N[:S]`.
pub fn parse_keys(text: &str) -> Result<KeySpec, String> {
    let usage = || format!("{text:?} is not none, uniform:N or zipf:N[:S]");
    let mut parts = text.split(':');
    let kind = parts.next().unwrap_or("");
    if kind == "none" {
        return if parts.next().is_none() { Ok(KeySpec::None) } else { Err(usage()) };
    }
    let keys: u64 = parts.next().ok_or_else(usage)?.parse().map_err(|_| usage())?;
    if keys == 0 || keys > keys_max as u64 {
        return Err(format!("{text:?}: the number of keys must be 1 to {keys_max}"));
    }
    let keys = keys as u32;
    let spec = match kind {
        "uniform" => KeySpec::Uniform { keys },
        "zipf" => {
            let exponent = match parts.next() {
                None => zipf_exponent_default,
                Some(s) => s.parse::<f64>().map_err(|_| usage())?,
            };
            if !(exponent > 0.0 && exponent <= zipf_exponent_max) {
                return Err(format!("{text:?}: the Zipf exponent must be above 0 and at most {zipf_exponent_max}"));
            }
            KeySpec::Zipf { keys, exponent }
        }
        _ => return Err(usage()),
    };
    if parts.next().is_some() {
        return Err(usage());
    }
    Ok(spec)
}

/// Writes key `index` ("key-<index>") into `out`; returns its bytes.
pub fn key_bytes(index: u32, out: &mut [u8; key_bytes_max]) -> &[u8] {
    out[..4].copy_from_slice(b"key-");
    let mut digits = [0u8; 10];
    let mut n = index;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        out[4 + i] = digits[count - 1 - i];
    }
    &out[..4 + count]
}

/// Kafka's default partitioner for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ringstream_client::partition_for_key(key, partitions)
}

/// The keys one leader's partitions receive, with cumulative weights.
#[derive(Debug)]
pub struct KeyTable {
    /// Running sum of the weights of `entries[..=i]`.
    cumulative: Vec<f64>,
    /// Key index and the slot (index into the connection's partition list).
    entries: Vec<(u32, u32)>,
    /// Sum of every key's weight, over all partitions.
    total_weight: f64,
}

impl KeyTable {
    /// The table for a connection writing `slots` (partition indexes) of a
    /// topic with `partitions_total` partitions.
    pub fn build(spec: &KeySpec, partitions_total: i32, slots: &[i32]) -> KeyTable {
        let keys = spec.keys();
        assert!(keys >= 1 && keys as usize <= keys_max);
        assert!(partitions_total >= 1 && !slots.is_empty());
        let mut slot_of = vec![u32::MAX; partitions_total as usize];
        for (slot, &partition) in slots.iter().enumerate() {
            assert!((0..partitions_total).contains(&partition));
            slot_of[partition as usize] = slot as u32;
        }
        let mut cumulative = Vec::new();
        let mut entries = Vec::new();
        let mut sum = 0.0;
        let mut total_weight = 0.0;
        let mut buffer = [0u8; key_bytes_max];
        for index in 0..keys {
            let weight = spec.weight(index);
            total_weight += weight;
            let partition = partition_for_key(key_bytes(index, &mut buffer), partitions_total);
            let slot = slot_of[partition as usize];
            if slot != u32::MAX {
                sum += weight;
                cumulative.push(sum);
                entries.push((index, slot));
            }
        }
        KeyTable { cumulative, entries, total_weight }
    }

    /// Share of all keyed traffic that goes to this table's partitions.
    pub fn share(&self) -> f64 {
        self.cumulative.last().map_or(0.0, |sum| sum / self.total_weight)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Draws a key by weight: its index and slot.
    pub fn sample(&self, rng: &mut Rng) -> (u32, u32) {
        assert!(!self.entries.is_empty());
        let sum = *self.cumulative.last().expect("not empty");
        let target = rng.next_f64() * sum;
        let at = self.cumulative.partition_point(|&c| c <= target).min(self.entries.len() - 1);
        self.entries[at]
    }
}

/// SplitMix64 (ringstream-core's): small, fast and good enough for load shapes.
pub use ringstream_core::rng::SplitMix64 as Rng;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partitioner_matches_kafka() {
        // murmur2 itself is checked against Kafka's UtilsTest vectors in
        // ringstream_client; here, its use as Kafka's default partitioner:
        // murmur2("21") = -973932308, murmur2("abc") = 479470107.
        // Utils.toPositive(murmur2) % partitions, worked out by hand:
        // -973932308 & 0x7fffffff = 1173551340 = 12 * 97795945.
        assert_eq!(partition_for_key(b"21", 12), 0);
        assert_eq!(partition_for_key(b"21", 7), 1173551340 % 7);
        // 479470107 is positive already.
        assert_eq!(partition_for_key(b"abc", 10), 7);
    }

    #[test]
    fn key_text() {
        let mut buffer = [0u8; key_bytes_max];
        assert_eq!(key_bytes(0, &mut buffer), b"key-0");
        assert_eq!(key_bytes(1_048_575, &mut buffer), b"key-1048575");
        assert_eq!(key_bytes(u32::MAX, &mut buffer), b"key-4294967295");
    }

    #[test]
    fn key_flags() {
        assert_eq!(parse_keys("none").unwrap(), KeySpec::None);
        assert_eq!(parse_keys("uniform:10").unwrap(), KeySpec::Uniform { keys: 10 });
        assert_eq!(parse_keys("zipf:100").unwrap(), KeySpec::Zipf { keys: 100, exponent: 0.99 });
        assert_eq!(parse_keys("zipf:100:1.2").unwrap(), KeySpec::Zipf { keys: 100, exponent: 1.2 });
        for bad in ["", "zipf", "uniform:0", "uniform:x", "zipf:10:0", "zipf:10:-1", "zipf:10:1:2", "none:1", "gauss:3"]
        {
            assert!(parse_keys(bad).is_err(), "{bad}");
        }
        assert!(parse_keys(&format!("uniform:{}", keys_max + 1)).is_err());
    }

    #[test]
    fn every_key_lands_on_its_murmur2_partition() {
        let spec = KeySpec::Uniform { keys: 1000 };
        // Two leaders: even and odd partitions of 6.
        let even = KeyTable::build(&spec, 6, &[0, 2, 4]);
        let odd = KeyTable::build(&spec, 6, &[1, 3, 5]);
        assert_eq!(even.entries.len() + odd.entries.len(), 1000);
        assert!((even.share() + odd.share() - 1.0).abs() < 1e-9);
        let mut buffer = [0u8; key_bytes_max];
        for (table, slots) in [(&even, [0, 2, 4]), (&odd, [1, 3, 5])] {
            for &(key, slot) in &table.entries {
                assert_eq!(partition_for_key(key_bytes(key, &mut buffer), 6), slots[slot as usize]);
            }
        }
    }

    /// Zipf with N = 100, S = 0.99: P(rank 1) = 1 / H(100, 0.99) ≈ 0.19,
    /// and P(rank 2) / P(rank 1) = 2^-0.99.
    #[test]
    fn zipf_frequencies_follow_theory() {
        let spec = KeySpec::Zipf { keys: 100, exponent: 0.99 };
        let table = KeyTable::build(&spec, 1, &[0]);
        let harmonic: f64 = (1..=100).map(|k| (k as f64).powf(-0.99)).sum();
        let p1 = 1.0 / harmonic;
        let draws = 200_000u32;
        let mut counts = vec![0u32; 100];
        let mut rng = Rng::new(42);
        for _ in 0..draws {
            let (key, slot) = table.sample(&mut rng);
            assert_eq!(slot, 0);
            counts[key as usize] += 1;
        }
        let f1 = f64::from(counts[0]) / f64::from(draws);
        let sigma = (p1 * (1.0 - p1) / f64::from(draws)).sqrt();
        assert!((f1 - p1).abs() < 5.0 * sigma, "rank 1: {f1} vs {p1} (sigma {sigma})");
        let ratio = f64::from(counts[1]) / f64::from(counts[0]);
        assert!((ratio - 2f64.powf(-0.99)).abs() < 0.02, "rank 2 / rank 1: {ratio}");
        let f100 = f64::from(counts[99]) / f64::from(draws);
        let p100 = 100f64.powf(-0.99) / harmonic;
        assert!((f100 - p100).abs() < 5.0 * (p100 / f64::from(draws)).sqrt(), "rank 100: {f100} vs {p100}");
        assert!(counts.iter().all(|&c| c > 0));
    }

    #[test]
    fn uniform_keys_are_uniform() {
        let table = KeyTable::build(&KeySpec::Uniform { keys: 10 }, 1, &[0]);
        let mut counts = [0u32; 10];
        let mut rng = Rng::new(7);
        for _ in 0..100_000 {
            counts[table.sample(&mut rng).0 as usize] += 1;
        }
        // Expected 10,000 each; sigma ≈ 95.
        assert!(counts.iter().all(|&c| (9_500..=10_500).contains(&c)), "{counts:?}");
    }

    #[test]
    fn ranges_stay_inside() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 5];
        for _ in 0..10_000 {
            let v = rng.range_u32(100, 104);
            assert!((100..=104).contains(&v));
            seen[(v - 100) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.range_u32(7, 7), 7);
        let f = rng.next_f64();
        assert!((0.0..1.0).contains(&f));
    }
}
