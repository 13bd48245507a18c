//! The lock rules on top of the Lua scripts: acquire (all keys or none, with
//! waiting), release, lease extension and release-all, plus the service's
//! connection and closed state.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnectionFactory, RedisConnection};
use crate::error::{LockError, LockResult};
use crate::options::{LockingOptions, RetryBackoff, ANONYMOUS_OWNER};
use crate::scripts;
use crate::wake::{Waiter, WakeHub};

/// How many keys one SCAN step, or one batch of an owner's index, covers in `release_all`.
const RELEASE_ALL_BATCH: usize = 1000;
/// How long a waiter's queue entry outlives its last attempt, beyond two
/// polling intervals: a waiter that died stops blocking others after that.
const QUEUE_ENTRY_GRACE: Duration = Duration::from_secs(1);

/// Where the connection is in its life.
enum ConnectionState {
  NotYetOpened,
  Open(RedisConnection),
  Closed,
}

/// Who a lock is taken or released for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
  /// No owner given: Medusa's `*`, never re-entered.
  Anonymous,
  /// A caller-chosen id. Its locks are listed in a per-owner index, so
  /// `release_all` finds them without scanning the namespace.
  Named(&'a str),
  /// An id unique to one `execute` call, which releases its keys itself.
  PerCall(&'a str),
}

impl<'a> Owner<'a> {
  /// The owner for an id given by a caller (`*` is the anonymous owner).
  pub fn from_id(id: &'a str) -> Self {
    if id == ANONYMOUS_OWNER {
      Owner::Anonymous
    } else {
      Owner::Named(id)
    }
  }

  pub fn id(&self) -> &'a str {
    match self {
      Owner::Anonymous => ANONYMOUS_OWNER,
      Owner::Named(id) | Owner::PerCall(id) => id,
    }
  }
}

/// How long an acquisition may wait for keys held by others.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
  /// Fail at once with `LOCK_CONFLICT`.
  No,
  /// Retry until `deadline`, then fail with `LOCK_TIMEOUT`.
  Until { deadline: Instant },
}

/// The first key that kept an attempt from succeeding.
struct Blocked {
  index: usize,
  /// Remaining TTL of that key; `None` when it does not expire.
  ttl: Option<Duration>,
}

pub struct LockEngine {
  factory: ConnectionFactory,
  state: RwLock<ConnectionState>,
  /// Serialises opening the connection, so concurrent first calls share one.
  opening: tokio::sync::Mutex<()>,
  closed: CancellationToken,
  namespace: String,
  /// SCAN pattern matching exactly this namespace (glob characters escaped).
  namespace_pattern: String,
  wait_timeout: Duration,
  retry_backoff: RetryBackoff,
  wake: Arc<WakeHub>,
  /// Where release scripts announce whose turn it is (see `wake.rs`).
  wake_channel: String,
  queue_entry_ttl: Duration,
}

impl LockEngine {
  pub fn new(factory: ConnectionFactory, options: LockingOptions) -> Self {
    LockEngine {
      factory,
      state: RwLock::new(ConnectionState::NotYetOpened),
      opening: tokio::sync::Mutex::new(()),
      closed: CancellationToken::new(),
      namespace_pattern: format!("{}*", escape_glob(&options.namespace)),
      wake_channel: format!("ferrolock:wake:{}", options.namespace),
      namespace: options.namespace,
      wait_timeout: options.wait_timeout,
      queue_entry_ttl: options.retry_backoff.max * 2 + QUEUE_ENTRY_GRACE,
      retry_backoff: options.retry_backoff,
      wake: Arc::new(WakeHub::default()),
    }
  }

  pub fn wait_timeout(&self) -> Duration {
    self.wait_timeout
  }

  /// Resolves when the service is closed.
  pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
    self.closed.cancelled()
  }

  pub fn is_closed(&self) -> bool {
    self.closed.is_cancelled()
  }

  fn current_connection(&self) -> LockResult<Option<RedisConnection>> {
    match &*self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()) {
      ConnectionState::NotYetOpened => Ok(None),
      ConnectionState::Open(connection) => Ok(Some(connection.clone())),
      ConnectionState::Closed => Err(LockError::Closed),
    }
  }

  /// The shared connection, opened on first use.
  pub async fn connection(&self) -> LockResult<RedisConnection> {
    if let Some(connection) = self.current_connection()? {
      return Ok(connection);
    }
    let _opening = self.opening.lock().await;
    if let Some(connection) = self.current_connection()? {
      return Ok(connection);
    }
    let connection = tokio::select! {
      connection = self.factory.connect() => connection?,
      _ = self.closed.cancelled() => return Err(LockError::Closed),
    };
    let mut state = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if matches!(*state, ConnectionState::Closed) {
      return Err(LockError::Closed);
    }
    *state = ConnectionState::Open(connection.clone());
    tokio::spawn(
      self
        .wake
        .clone()
        .listen(self.factory.clone(), self.wake_channel.clone(), self.closed.clone()),
    );
    Ok(connection)
  }

  /// Stops every wait and renewal and drops the connection; later calls fail with `CLOSED`.
  pub fn close(&self) {
    self.closed.cancel();
    *self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = ConnectionState::Closed;
  }

  /// The KEYS of the queue-aware scripts: the lock keys, then their queues,
  /// then their waiter-entry hashes, then a named owner's index. Queue keys
  /// live outside the namespace (a SCAN of it sees only locks) and hash-tag
  /// their lock key; `queue.lua` spells the same names.
  fn script_keys(&self, lock_keys: Vec<String>, owner: Owner) -> Vec<String> {
    let mut all = Vec::with_capacity(lock_keys.len() * 3 + 1);
    let queues: Vec<String> = lock_keys.iter().map(|key| format!("ferrolock:q:{{{key}}}")).collect();
    let entries: Vec<String> = lock_keys.iter().map(|key| format!("ferrolock:d:{{{key}}}")).collect();
    all.extend(lock_keys);
    all.extend(queues);
    all.extend(entries);
    if let Owner::Named(id) = owner {
      all.push(self.owner_index_key(id));
    }
    all
  }

  /// The set of keys a named owner holds in this namespace.
  fn owner_index_key(&self, owner: &str) -> String {
    format!("ferrolock:o:{{{}}}{owner}", self.namespace)
  }

  fn lock_keys(&self, keys: &[String]) -> Vec<String> {
    keys.iter().map(|key| format!("{}{key}", self.namespace)).collect()
  }

  /// One attempt at taking every key, in one round trip. A `waiter` that
  /// is blocked gets (or keeps) its place in the keys' queues; with
  /// `accepts_grant` its entry lets a release hand the lock over directly.
  async fn try_acquire(
    &self,
    script_keys: &[String],
    owner: Owner<'_>,
    lease_ttl: Option<Duration>,
    waiter: Option<&Waiter<'_>>,
    accepts_grant: bool,
  ) -> LockResult<Option<Blocked>> {
    let mut connection = self.connection().await?;
    let lease_ms = lease_ttl.map_or(0, |ttl| ttl.as_millis().max(1));
    let (index, pttl): (usize, i64) = scripts::ACQUIRE
      .key(script_keys)
      .arg(owner.id())
      .arg(lease_ms as u64)
      .arg(waiter.map_or("", |waiter| waiter.id()))
      .arg(self.queue_entry_ttl.as_millis() as u64)
      .arg(if accepts_grant { "1" } else { "0" })
      .arg(self.namespace.len())
      .invoke_async(&mut connection)
      .await?;
    Ok((index > 0).then(|| Blocked {
      index: index - 1,
      ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
    }))
  }

  /// Takes all `keys` for `owner`, or none of them. Waiting never holds a
  /// partial set, so callers passing keys in any order cannot deadlock;
  /// waiters are served in arrival order and woken when their turn comes.
  pub async fn acquire(
    &self,
    keys: &[String],
    owner: Owner<'_>,
    lease_ttl: Option<Duration>,
    wait: Wait,
  ) -> LockResult<()> {
    let script_keys = self.script_keys(self.lock_keys(keys), owner);
    let Wait::Until { deadline } = wait else {
      return match self.try_acquire(&script_keys, owner, lease_ttl, None, false).await? {
        None => Ok(()),
        Some(blocked) => Err(LockError::Conflict {
          key: keys[blocked.index].clone(),
        }),
      };
    };
    let waiter = self.wake.waiter();
    let outcome = self
      .wait_for_keys(&script_keys, keys.len(), owner, lease_ttl, deadline, &waiter)
      .await;
    if outcome.is_err() && !self.is_closed() {
      // Leave the queues at once rather than blocking them until the entries
      // lapse. A per-call owner also undoes a grant (or abandoned attempt)
      // that landed too late: on the same connection this runs after it. A
      // named owner may hold the keys re-entrantly from before, so never.
      let undo_owner = match owner {
        Owner::PerCall(id) => id,
        _ => "",
      };
      let _ = self.dequeue(&script_keys, &waiter, undo_owner).await;
    }
    outcome
  }

  async fn wait_for_keys(
    &self,
    script_keys: &[String],
    key_count: usize,
    owner: Owner<'_>,
    lease_ttl: Option<Duration>,
    deadline: Instant,
    waiter: &Waiter<'_>,
  ) -> LockResult<()> {
    let per_call = matches!(owner, Owner::PerCall(_));
    // A release can only hand over one key, and only to an owner nobody else uses.
    let accepts_grant = per_call && key_count == 1 && lease_ttl.is_some();
    let mut retry_interval = self.retry_backoff.initial;
    loop {
      let attempt = self.try_acquire(script_keys, owner, lease_ttl, Some(waiter), accepts_grant);
      // Only a per-call owner's attempt may be abandoned at the deadline (its
      // late success is undone by `dequeue`); others are awaited.
      let outcome = if per_call {
        match tokio::time::timeout_at(deadline, attempt).await {
          Ok(outcome) => outcome,
          Err(_) => return Err(LockError::Timeout),
        }
      } else {
        attempt.await
      };
      let Some(blocked) = outcome? else {
        return Ok(());
      };
      let now = Instant::now();
      if now >= deadline {
        return Err(LockError::Timeout);
      }
      // Polling is only the safety net behind wake-ups (a Medusa instance
      // releasing does not announce it). Jitter spreads competing pollers; a
      // holder's TTL bounds the sleep so an expiry is seen promptly.
      let mut pause = retry_interval.mul_f64(0.5 + fastrand::f64() * 0.5);
      if let Some(ttl) = blocked.ttl {
        pause = pause.min(ttl + Duration::from_millis(1));
      }
      pause = pause.min(deadline - now);
      tokio::select! {
        _ = waiter.woken() => if waiter.was_granted() {
          return Ok(());
        },
        _ = tokio::time::sleep(pause) => {}
        _ = self.closed.cancelled() => return Err(LockError::Closed),
      }
      retry_interval = retry_interval
        .mul_f64(self.retry_backoff.factor)
        .min(self.retry_backoff.max);
    }
  }

  async fn dequeue(&self, script_keys: &[String], waiter: &Waiter<'_>, undo_owner: &str) -> LockResult<()> {
    let mut connection = self.connection().await?;
    scripts::DEQUEUE
      .key(script_keys)
      .arg(waiter.id())
      .arg(undo_owner)
      .arg(&self.wake_channel)
      .invoke_async::<()>(&mut connection)
      .await?;
    Ok(())
  }

  /// Deletes each key `owner` holds; `true` when every key was released.
  pub async fn release(&self, keys: &[String], owner: Owner<'_>) -> LockResult<bool> {
    let released = self
      .release_script_keys(self.script_keys(self.lock_keys(keys), owner), owner)
      .await?;
    Ok(released == keys.len())
  }

  /// Compare-and-delete of lock keys, handing each over to its next waiter; returns how many were deleted.
  async fn release_script_keys(&self, script_keys: Vec<String>, owner: Owner<'_>) -> LockResult<usize> {
    let mut connection = self.connection().await?;
    let released: usize = scripts::RELEASE
      .key(script_keys)
      .arg(owner.id())
      .arg(&self.wake_channel)
      .arg(self.namespace.len())
      .invoke_async(&mut connection)
      .await?;
    Ok(released)
  }

  /// Resets the lease of keys `owner` still holds. `Some(key)`: that key is no longer held.
  pub async fn extend(&self, keys: &[String], owner: Owner<'_>, lease_ttl: Duration) -> LockResult<Option<String>> {
    let mut connection = self.connection().await?;
    let lost_index: usize = scripts::EXTEND
      .key(self.lock_keys(keys))
      .arg(owner.id())
      .arg(lease_ttl.as_millis().max(1) as u64)
      .invoke_async(&mut connection)
      .await?;
    Ok(lost_index.checked_sub(1).map(|index| keys[index].clone()))
  }

  /// Releases every lock of this namespace held by `owner`; each key is
  /// compared and deleted atomically, never read and deleted in two steps.
  /// A named owner's locks come from its index, at a cost bounded by what it
  /// holds; other owners' locks are found by scanning the namespace.
  pub async fn release_all(&self, owner: Owner<'_>) -> LockResult<usize> {
    match owner {
      Owner::Named(id) => self.release_indexed(id).await,
      _ => self.release_scanned(owner).await,
    }
  }

  async fn release_indexed(&self, owner: &str) -> LockResult<usize> {
    let mut connection = self.connection().await?;
    let index = self.owner_index_key(owner);
    let mut released = 0;
    loop {
      let (count, remaining): (usize, usize) = scripts::RELEASE_OWNED
        .key(&index)
        .arg(owner)
        .arg(&self.wake_channel)
        .arg(&self.namespace)
        .arg(RELEASE_ALL_BATCH)
        .invoke_async(&mut connection)
        .await?;
      released += count;
      if remaining == 0 {
        return Ok(released);
      }
    }
  }

  async fn release_scanned(&self, owner: Owner<'_>) -> LockResult<usize> {
    let mut connection = self.connection().await?;
    let mut cursor: u64 = 0;
    let mut released = 0;
    loop {
      let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(&self.namespace_pattern)
        .arg("COUNT")
        .arg(RELEASE_ALL_BATCH)
        .query_async(&mut connection)
        .await?;
      if !found.is_empty() {
        released += self.release_script_keys(self.script_keys(found, owner), owner).await?;
      }
      if next == 0 {
        return Ok(released);
      }
      cursor = next;
    }
  }
}

/// Escapes Redis glob characters so a namespace like `shop[1]:` matches only itself.
fn escape_glob(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len());
  for c in text.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      escaped.push('\\');
    }
    escaped.push(c);
  }
  escaped
}

/// A fresh owner id per `execute` call, in Medusa's format.
pub fn execute_owner_id() -> String {
  format!("execute:{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
  use super::escape_glob;

  #[test]
  fn glob_characters_are_escaped() {
    assert_eq!(escape_glob("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
  }
}
