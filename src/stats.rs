//! Counters of one service and the distribution of its wait times, kept with
//! relaxed atomics so the hot path pays a few uncontended increments.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two of a wait in microseconds: each bucket spans
/// about 19 %, so a reported quantile is within that of the true value.
const STEPS_PER_DOUBLING: u32 = 4;
/// Up to 2^40 µs (~12 days): far beyond any wait a timeout allows.
const BUCKETS: usize = 40 * STEPS_PER_DOUBLING as usize;

#[derive(Default)]
pub struct Stats {
  pub acquired: AtomicU64,
  pub conflicts: AtomicU64,
  pub timeouts: AtomicU64,
  pub lost_leases: AtomicU64,
  pub renewals: AtomicU64,
  pub renewal_failures: AtomicU64,
  waits: WaitHistogram,
}

/// What `Stats` held at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
  pub acquired: u64,
  pub conflicts: u64,
  pub timeouts: u64,
  pub lost_leases: u64,
  pub renewals: u64,
  pub renewal_failures: u64,
  /// Acquisitions that waited (granted or timed out).
  pub waits: u64,
  pub wait_total: Duration,
  pub wait_p50: Duration,
  pub wait_p99: Duration,
  pub wait_max: Duration,
}

impl Stats {
  pub fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
  }

  pub fn record_wait(&self, waited: Duration) {
    self.waits.record(waited);
  }

  pub fn snapshot(&self) -> StatsSnapshot {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let waits = &self.waits;
    StatsSnapshot {
      acquired: load(&self.acquired),
      conflicts: load(&self.conflicts),
      timeouts: load(&self.timeouts),
      lost_leases: load(&self.lost_leases),
      renewals: load(&self.renewals),
      renewal_failures: load(&self.renewal_failures),
      waits: load(&waits.count),
      wait_total: Duration::from_micros(load(&waits.total_us)),
      wait_p50: waits.quantile(0.5),
      wait_p99: waits.quantile(0.99),
      wait_max: Duration::from_micros(load(&waits.max_us)),
    }
  }
}

struct WaitHistogram {
  buckets: [AtomicU64; BUCKETS],
  count: AtomicU64,
  total_us: AtomicU64,
  max_us: AtomicU64,
}

impl Default for WaitHistogram {
  fn default() -> Self {
    WaitHistogram {
      buckets: std::array::from_fn(|_| AtomicU64::new(0)),
      count: AtomicU64::new(0),
      total_us: AtomicU64::new(0),
      max_us: AtomicU64::new(0),
    }
  }
}

impl WaitHistogram {
  fn bucket_of(us: u64) -> usize {
    let scaled = ((us.max(1) as f64).log2() * f64::from(STEPS_PER_DOUBLING)).floor();
    (scaled as usize).min(BUCKETS - 1)
  }

  /// The upper edge of a bucket, in µs.
  fn upper_edge(bucket: usize) -> f64 {
    2f64.powf((bucket + 1) as f64 / f64::from(STEPS_PER_DOUBLING))
  }

  fn record(&self, waited: Duration) {
    let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
    self.buckets[Self::bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    self.count.fetch_add(1, Ordering::Relaxed);
    self.total_us.fetch_add(us, Ordering::Relaxed);
    self.max_us.fetch_max(us, Ordering::Relaxed);
  }

  /// The upper edge of the bucket holding quantile `q`, capped by the maximum.
  fn quantile(&self, q: f64) -> Duration {
    let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    if total == 0 {
      return Duration::ZERO;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, count) in counts.iter().enumerate() {
      seen += count;
      if seen >= rank {
        let max_us = self.max_us.load(Ordering::Relaxed) as f64;
        return Duration::from_micros(Self::upper_edge(bucket).min(max_us) as u64);
      }
    }
    Duration::from_micros(self.max_us.load(Ordering::Relaxed))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn quantiles_land_within_a_bucket_of_the_truth() {
    let stats = Stats::default();
    for ms in 1..=100u64 {
      stats.record_wait(Duration::from_millis(ms));
    }
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.waits, 100);
    assert_eq!(snapshot.wait_max, Duration::from_millis(100));
    let p50 = snapshot.wait_p50.as_secs_f64() * 1000.0;
    let p99 = snapshot.wait_p99.as_secs_f64() * 1000.0;
    assert!((50.0..=50.0 * 1.19 + 0.01).contains(&p50), "{p50}");
    assert!((99.0..=100.0).contains(&p99), "{p99}");
    assert_eq!(snapshot.wait_total, Duration::from_millis(5050));
  }
}
