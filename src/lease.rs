//! The renewal task behind `execute`: holds the keys' lease while the job runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::{execute_owner_id, LockEngine, Owner, Wait};
use crate::error::{LockError, LockResult};
use crate::options::ExecuteArgs;
use crate::stats::Stats;

/// Medusa renews no more often than this, whatever the lease.
const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(250);

/// Keys held for one `execute` call, renewed until [`HeldLease::finish`].
pub struct HeldLease {
  engine: Arc<LockEngine>,
  keys: Vec<String>,
  owner: String,
  fencing_tokens: Vec<u64>,
  stop_renewal: CancellationToken,
  /// Resolves to the error that ended the lease early, if any.
  renewal: Option<JoinHandle<Option<LockError>>>,
}

/// A lease dropped without `finish` (say its JS object could not be made)
/// stops renewing, so its keys lapse at the end of their lease.
impl Drop for HeldLease {
  fn drop(&mut self) {
    self.stop_renewal.cancel();
  }
}

impl HeldLease {
  /// Waits for `keys` under a fresh owner id, then renews their lease every
  /// third of it. `on_end` is told once if the lease is lost or the service closes.
  pub async fn acquire(
    engine: Arc<LockEngine>,
    keys: Vec<String>,
    args: ExecuteArgs,
    on_end: impl FnOnce(LockError) + Send + 'static,
  ) -> LockResult<Self> {
    let owner = execute_owner_id();
    let timeout = args.timeout.unwrap_or_else(|| engine.wait_timeout());
    let wait = Wait::Until {
      deadline: Instant::now() + timeout,
    };
    let grant = engine
      .acquire(&keys, Owner::PerCall(&owner), Some(args.lease_ttl), wait)
      .await?;
    let stop_renewal = CancellationToken::new();
    let renewal = tokio::spawn(renew_until_stopped(
      engine.clone(),
      keys.clone(),
      owner.clone(),
      args.lease_ttl,
      grant.lease_start,
      stop_renewal.clone(),
      on_end,
    ));
    Ok(HeldLease {
      engine,
      keys,
      owner,
      fencing_tokens: grant.fencing_tokens,
      stop_renewal,
      renewal: Some(renewal),
    })
  }

  pub fn keys(&self) -> &[String] {
    &self.keys
  }

  pub fn owner(&self) -> &str {
    &self.owner
  }

  /// The grant's fencing token of each key, in the order of [`HeldLease::keys`].
  pub fn fencing_tokens(&self) -> &[u64] {
    &self.fencing_tokens
  }

  /// Stops renewing and releases the keys. Fails with the error that ended
  /// the lease early (`LOCK_LOST`, `CLOSED`), with `LOCK_LOST` when a key
  /// was no longer ours to release, else with a failed release.
  pub async fn finish(mut self) -> LockResult<()> {
    self.stop_renewal.cancel();
    let renewal = self.renewal.take();
    // Release without waiting for the renewal task to wind down: the next
    // holder's start is on this path. A renewal racing the release finds
    // the key gone, which no longer matters.
    let (ended_early, released) = tokio::join!(
      async move {
        match renewal {
          Some(renewal) => renewal.await.unwrap_or(None),
          None => None,
        }
      },
      self
        .engine
        .unless_closed(self.engine.release(&self.keys, Owner::PerCall(&self.owner)))
    );
    match (ended_early, released) {
      (Some(error), _) => Err(error),
      (None, Ok(true)) => Ok(()),
      // Expired (or taken over) between the last renewal and the release.
      (None, Ok(false)) => {
        let lost = LockError::Lost {
          keys: self.keys.clone(),
        };
        Stats::count(&self.engine.counters().lost_leases);
        tracing::warn!(target: "ferrolock", service = self.engine.id(), "{lost}");
        Err(lost)
      }
      (None, Err(error)) => Err(error),
    }
  }
}

async fn renew_until_stopped(
  engine: Arc<LockEngine>,
  keys: Vec<String>,
  owner: String,
  lease_ttl: Duration,
  granted_at: Instant,
  stop: CancellationToken,
  on_end: impl FnOnce(LockError),
) -> Option<LockError> {
  let interval = (lease_ttl / 3).max(MIN_RENEW_INTERVAL);
  // Until when Redis is known to keep the keys for us, without asking again,
  // less a margin for clock drift and a busy event loop (Redlock's 1 % + 2 ms):
  // the job is told its lease is gone before the keys can lapse in Redis.
  let margin = lease_ttl / 100 + Duration::from_millis(2);
  let mut valid_until = granted_at + lease_ttl - margin;
  let ended = loop {
    // The lease is reported lost when our bound of its expiry passes, even
    // if Redis has not answered by then (a partition, a stalled server):
    // from that instant another process may hold the keys.
    tokio::select! {
      biased;
      _ = stop.cancelled() => return None,
      _ = engine.closed() => break LockError::Closed,
      _ = tokio::time::sleep_until(valid_until) => break LockError::Lost { keys: keys.clone() },
      _ = tokio::time::sleep(interval) => {}
    }
    let attempt_started = Instant::now();
    // Stop first: `finish` releases while this may be extending, and an
    // extension that finds the key already released is not a lost lease.
    let renewed = tokio::select! {
      biased;
      _ = stop.cancelled() => return None,
      _ = engine.closed() => break LockError::Closed,
      _ = tokio::time::sleep_until(valid_until) => break LockError::Lost { keys: keys.clone() },
      renewed = engine.extend(&keys, Owner::PerCall(&owner), lease_ttl) => renewed,
    };
    match renewed {
      Ok(None) => {
        valid_until = attempt_started + lease_ttl - margin;
        Stats::count(&engine.counters().renewals);
        tracing::debug!(
          target: "ferrolock",
          service = engine.id(),
          ?keys,
          owner,
          renew_ms = attempt_started.elapsed().as_secs_f64() * 1000.0,
          "lease renewed"
        );
      }
      Ok(Some(lost_key)) => break LockError::Lost { keys: vec![lost_key] },
      // Retried at the next tick, as long as the lease may still stand.
      Err(error) => {
        Stats::count(&engine.counters().renewal_failures);
        // Medusa's own wording, so its operators' log searches still match.
        tracing::warn!(
          target: "ferrolock",
          service = engine.id(),
          "Failed to renew lock for key(s) \"{}\": {error}. Retrying in {}ms.",
          keys.join("\", \""),
          interval.as_millis()
        );
      }
    }
  };
  if let LockError::Lost { .. } = &ended {
    Stats::count(&engine.counters().lost_leases);
    tracing::warn!(target: "ferrolock", service = engine.id(), "{ended}");
  }
  on_end(ended.clone());
  Some(ended)
}
