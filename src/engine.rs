//! The lock rules on top of the Lua scripts: acquire (all keys or none, with
//! waiting), release, lease extension and release-all, plus the service's
//! connection and closed state.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connection::{hash_slot, same_slot_tag, slot_text, ConnectionFactory, RedisConnection};
use crate::error::{LockError, LockResult};
use crate::options::{LockingOptions, ReplicaAcks, RetryBackoff, ANONYMOUS_OWNER};
use crate::scripts;
use crate::stats::{Stats, StatsSnapshot};
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

/// Keys of one call that live in one hash slot (all of them, outside a
/// cluster), with the KEYS their scripts take.
struct KeyGroup {
  /// Positions of these keys in the caller's list.
  positions: Vec<usize>,
  script_keys: Vec<String>,
}

/// What an acquisition got.
#[derive(Debug, Clone)]
pub struct Grant {
  /// An instant before which the lease cannot have started, so
  /// `lease_start + lease_ttl` is a safe local bound of its expiry.
  pub lease_start: Instant,
  /// The fencing token of each key, in the caller's order: larger than the
  /// token of every earlier grant of that key.
  pub fencing_tokens: Vec<u64>,
}

/// How one attempt ended.
enum Attempt {
  Taken { fencing_tokens: Vec<u64> },
  Blocked(Blocked),
}

/// A SCAN in progress over the primaries still to visit (the last one first).
struct KeyScan {
  pattern: String,
  nodes: Vec<Option<(String, u16)>>,
  cursor: u64,
}

/// The first key that kept an attempt from succeeding.
struct Blocked {
  index: usize,
  /// Remaining TTL of that key; `None` when it does not expire.
  ttl: Option<Duration>,
}

/// Tells services apart in `tracing` events (field `service`).
static NEXT_SERVICE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct LockEngine {
  id: u64,
  stats: Stats,
  factory: ConnectionFactory,
  state: RwLock<ConnectionState>,
  /// Serialises opening the connection, so concurrent first calls share one;
  /// holds the error of the last attempt if it failed.
  opening: tokio::sync::Mutex<Option<LockError>>,
  /// Connection attempts finished so far.
  connect_attempts: std::sync::atomic::AtomicU64,
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
  replica_acks: Option<ReplicaAcks>,
  /// Scripts may only touch one hash slot: calls are split per slot, and
  /// owners are not indexed (an index key would sit in another slot).
  cluster: bool,
}

impl LockEngine {
  pub fn new(factory: ConnectionFactory, options: LockingOptions) -> Self {
    LockEngine {
      id: NEXT_SERVICE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
      stats: Stats::default(),
      state: RwLock::new(ConnectionState::NotYetOpened),
      opening: tokio::sync::Mutex::new(None),
      connect_attempts: std::sync::atomic::AtomicU64::new(0),
      closed: CancellationToken::new(),
      namespace_pattern: format!("{}*", escape_glob(&options.namespace)),
      wake_channel: format!("ferrolock:wake:{}", options.namespace),
      namespace: options.namespace,
      wait_timeout: options.wait_timeout,
      queue_entry_ttl: options.retry_backoff.max * 2 + QUEUE_ENTRY_GRACE,
      retry_backoff: options.retry_backoff,
      replica_acks: options.replica_acks,
      wake: Arc::new(WakeHub::default()),
      cluster: factory.is_cluster(),
      factory,
    }
  }

  pub fn wait_timeout(&self) -> Duration {
    self.wait_timeout
  }

  pub fn namespace(&self) -> &str {
    &self.namespace
  }

  /// This service's id in `tracing` events (their `service` field).
  pub fn id(&self) -> u64 {
    self.id
  }

  pub fn stats(&self) -> StatsSnapshot {
    self.stats.snapshot()
  }

  pub(crate) fn counters(&self) -> &Stats {
    &self.stats
  }

  /// Resolves when the service is closed.
  pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
    self.closed.cancelled()
  }

  pub fn is_closed(&self) -> bool {
    self.closed.is_cancelled()
  }

  /// Runs `operation` unless the service closes first: `close()` settles
  /// calls still waiting on Redis with `CLOSED` instead of leaving them
  /// to their command timeout.
  pub fn unless_closed<T, F>(&self, operation: F) -> UnlessClosed<'_, F>
  where
    F: std::future::Future<Output = LockResult<T>>,
  {
    UnlessClosed {
      closed: self.closed.cancelled(),
      operation,
    }
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
    // Boxed: connecting is a large future that every call would otherwise
    // carry (and copy) although only the first one needs it.
    Box::pin(self.open_connection()).await
  }

  async fn open_connection(&self) -> LockResult<RedisConnection> {
    let attempts_seen = self.connect_attempts.load(std::sync::atomic::Ordering::Relaxed);
    let mut failed = self.opening.lock().await;
    if let Some(connection) = self.current_connection()? {
      return Ok(connection);
    }
    // An attempt failed while we queued for the lock: share its outcome, or
    // every queued call would wait out its own connect timeout.
    if self.connect_attempts.load(std::sync::atomic::Ordering::Relaxed) != attempts_seen {
      if let Some(error) = failed.clone() {
        return Err(error);
      }
    }
    let connected = tokio::select! {
      connected = self.factory.connect() => connected,
      _ = self.closed.cancelled() => return Err(LockError::Closed),
    };
    self.connect_attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let connection = match connected {
      Ok(connection) => connection,
      Err(error) => {
        *failed = Some(error.clone());
        return Err(error);
      }
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

  /// The KEYS of the queue-aware scripts: the lock keys (all in one slot),
  /// then their queues, then their waiter-entry hashes, then the slot's
  /// fencing counter, then a named owner's index (not in a cluster). Queue
  /// keys live outside the namespace (a SCAN of it sees only locks) and carry
  /// a hash tag that puts them in their lock key's slot.
  fn script_keys(&self, lock_keys: Vec<String>, owner: Owner) -> Vec<String> {
    let mut all = Vec::with_capacity(lock_keys.len() * 3 + 2);
    let fence = self.fence_key(&lock_keys[0]);
    let tags: Vec<String> = lock_keys
      .iter()
      .map(|key| {
        let tag = same_slot_tag(key);
        // The tag is usually the whole key; else the key follows it, to stay unique.
        if tag.len() == key.len() + 2 {
          tag
        } else {
          format!("{tag}{key}")
        }
      })
      .collect();
    all.extend(lock_keys);
    all.extend(tags.iter().map(|tag| format!("ferrolock:q:{tag}")));
    all.extend(tags.iter().map(|tag| format!("ferrolock:d:{tag}")));
    all.push(fence);
    if let (Owner::Named(id), false) = (owner, self.cluster) {
      all.push(self.owner_index_key(id));
    }
    all
  }

  /// The keys of one call split by hash slot, in ascending slot order, so
  /// every caller takes multi-slot sets in the same global order.
  fn key_groups(&self, keys: &[String], owner: Owner) -> Vec<KeyGroup> {
    let lock_keys = self.lock_keys(keys);
    let mut by_slot: Vec<(u16, Vec<usize>)> = Vec::new();
    for (position, key) in lock_keys.iter().enumerate() {
      let slot = if self.cluster { hash_slot(key) } else { 0 };
      match by_slot.iter_mut().find(|(group_slot, _)| *group_slot == slot) {
        Some((_, positions)) => positions.push(position),
        None => by_slot.push((slot, vec![position])),
      }
    }
    by_slot.sort_by_key(|(slot, _)| *slot);
    by_slot
      .into_iter()
      .map(|(_, positions)| KeyGroup {
        script_keys: self.script_keys(positions.iter().map(|&p| lock_keys[p].clone()).collect(), owner),
        positions,
      })
      .collect()
  }

  /// The counter behind the fencing tokens of `lock_key`'s slot: one per
  /// namespace, or per namespace and slot in a cluster.
  fn fence_key(&self, lock_key: &str) -> String {
    if self.cluster {
      format!("ferrolock:f:{{{}}}{}", slot_text(hash_slot(lock_key)), self.namespace)
    } else {
      format!("ferrolock:f:{}", self.namespace)
    }
  }

  /// The keys a named owner holds in this namespace, while they are few (see `acquire.lua`).
  fn owner_index_key(&self, owner: &str) -> String {
    format!("ferrolock:o:{{{}}}{owner}", self.namespace)
  }

  fn lock_keys(&self, keys: &[String]) -> Vec<String> {
    keys.iter().map(|key| format!("{}{key}", self.namespace)).collect()
  }

  /// One attempt at taking every key: one round trip per hash slot (one in
  /// all outside a cluster). A `waiter` that is blocked gets (or keeps) its
  /// place in the blocking keys' queues; with `accepts_grant` its entry lets
  /// a release hand the lock over directly. Across slots, keys taken before
  /// a blocked slot are given back, so no partial set is ever kept.
  async fn try_acquire(
    &self,
    groups: &[KeyGroup],
    owner: Owner<'_>,
    lease_ttl: Option<Duration>,
    waiter: Option<&Waiter<'_>>,
    accepts_grant: bool,
  ) -> LockResult<Attempt> {
    let mut connection = self.connection().await?;
    let lease_ms = lease_ttl.map_or(0, |ttl| ttl.as_millis().max(1));
    let mut taken: Vec<Vec<String>> = Vec::new();
    let mut fencing_tokens = vec![0; groups.iter().map(|group| group.positions.len()).sum()];
    for group in groups {
      let reply: Vec<i64> = scripts::ACQUIRE
        .key(&group.script_keys)
        .arg(owner.id())
        .arg(lease_ms as u64)
        .arg(waiter.map_or("", |waiter| waiter.id()))
        .arg(self.queue_entry_ttl.as_millis() as u64)
        .arg(if accepts_grant { "1" } else { "0" })
        .arg(self.namespace.len())
        .invoke_async(&mut connection)
        .await?;
      let blocked_at = reply.first().copied().unwrap_or(0);
      if blocked_at > 0 {
        for fresh in &taken {
          Box::pin(self.release_lock_keys(fresh.clone(), owner)).await?;
        }
        return Ok(Attempt::Blocked(Blocked {
          index: group.positions[blocked_at as usize - 1],
          ttl: reply
            .get(1)
            .and_then(|&pttl| u64::try_from(pttl).ok())
            .map(Duration::from_millis),
        }));
      }
      let token = reply.get(1).and_then(|&token| u64::try_from(token).ok()).unwrap_or(0);
      for &position in &group.positions {
        fencing_tokens[position] = token;
      }
      // Only keys this call newly took are given back on rollback, never re-entered ones.
      taken.push(
        group
          .positions
          .iter()
          .enumerate()
          .filter(|(i, _)| reply.get(i + 2) == Some(&1))
          .map(|(i, _)| group.script_keys[i].clone())
          .collect(),
      );
      if let Some(acks) = self.replica_acks {
        if let Err(error) = Box::pin(self.wait_for_replicas(&mut connection, group, acks)).await {
          for fresh in &taken {
            let _ = Box::pin(self.release_lock_keys(fresh.clone(), owner)).await;
          }
          return Err(error);
        }
      }
    }
    Ok(Attempt::Taken { fencing_tokens })
  }

  /// Redis `WAIT` on the node that just granted `group`: a failover right
  /// after the grant cannot silently hand the same keys to someone else.
  async fn wait_for_replicas(
    &self,
    connection: &mut RedisConnection,
    group: &KeyGroup,
    acks: ReplicaAcks,
  ) -> LockResult<()> {
    let mut wait = redis::cmd("WAIT");
    wait.arg(acks.replicas).arg(acks.timeout.as_millis() as u64);
    let acknowledged: u32 = connection.query_slot_master(wait, &group.script_keys[0]).await?;
    if acknowledged < acks.replicas {
      return Err(LockError::Redis(format!(
        "only {acknowledged} of {} replicas acknowledged the lock within {} ms (waitForReplicas)",
        acks.replicas,
        acks.timeout.as_millis()
      )));
    }
    Ok(())
  }

  /// Takes all `keys` for `owner`, or none of them. Waiting never holds a
  /// partial set, so callers passing keys in any order cannot deadlock;
  /// waiters are served in arrival order and woken when their turn comes.
  #[tracing::instrument(level = "debug", name = "ferrolock.acquire", target = "ferrolock", skip_all, fields(service = self.id, ?keys, owner = owner.id()))]
  pub async fn acquire(
    &self,
    keys: &[String],
    owner: Owner<'_>,
    lease_ttl: Option<Duration>,
    wait: Wait,
  ) -> LockResult<Grant> {
    let groups = self.key_groups(keys, owner);
    let Wait::Until { deadline } = wait else {
      let lease_start = Instant::now();
      return match self.try_acquire(&groups, owner, lease_ttl, None, false).await? {
        Attempt::Taken { fencing_tokens } => {
          Stats::count(&self.stats.acquired);
          tracing::debug!(target: "ferrolock", service = self.id, ?keys, owner = owner.id(), "lock acquired");
          Ok(Grant {
            lease_start,
            fencing_tokens,
          })
        }
        Attempt::Blocked(blocked) => {
          Stats::count(&self.stats.conflicts);
          let key = keys[blocked.index].clone();
          tracing::debug!(target: "ferrolock", service = self.id, key, owner = owner.id(), "lock held by another owner");
          Err(LockError::Conflict { key })
        }
      };
    };
    let waiter = self.wake.waiter();
    let started = Instant::now();
    // Boxed, like the connect path: only waiting calls pay for its size.
    let outcome = Box::pin(self.wait_for_keys(&groups, keys.len(), owner, lease_ttl, deadline, &waiter)).await;
    let waited_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &outcome {
      Ok(_) => {
        Stats::count(&self.stats.acquired);
        self.stats.record_wait(started.elapsed());
        tracing::debug!(target: "ferrolock", service = self.id, ?keys, owner = owner.id(), waited_ms, "lock acquired");
      }
      Err(LockError::Timeout) => {
        Stats::count(&self.stats.timeouts);
        self.stats.record_wait(started.elapsed());
        tracing::debug!(target: "ferrolock", service = self.id, ?keys, owner = owner.id(), waited_ms, "timed out waiting for the lock");
      }
      Err(_) => {}
    }
    if outcome.is_err() && !self.is_closed() {
      // Leave the queues at once rather than blocking them until the entries
      // lapse. A per-call owner also undoes a grant (or abandoned attempt)
      // that landed too late: on the same connection this runs after it. A
      // named owner may hold the keys re-entrantly from before, so never.
      // In the background: the caller's timeout must not wait on Redis.
      let undo_owner = match owner {
        Owner::PerCall(id) => id,
        _ => "",
      };
      self.dequeue_in_background(&groups, waiter.id(), undo_owner);
    }
    outcome
  }

  #[tracing::instrument(level = "debug", name = "ferrolock.wait", target = "ferrolock", skip_all, fields(service = self.id))]
  async fn wait_for_keys(
    &self,
    groups: &[KeyGroup],
    key_count: usize,
    owner: Owner<'_>,
    lease_ttl: Option<Duration>,
    deadline: Instant,
    waiter: &Waiter<'_>,
  ) -> LockResult<Grant> {
    let per_call = matches!(owner, Owner::PerCall(_));
    // A release can only hand over one key, and only to an owner nobody else
    // uses; a grant made by another connection could not be `WAIT`ed for.
    let accepts_grant = per_call && key_count == 1 && lease_ttl.is_some() && self.replica_acks.is_none();
    let mut retry_interval = self.retry_backoff.initial;
    loop {
      // A grant can only land after the attempt that queued us ran, so the
      // last attempt's start also bounds the start of a granted lease.
      let attempt_started = Instant::now();
      let attempt = self.try_acquire(groups, owner, lease_ttl, Some(waiter), accepts_grant);
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
      let blocked = match outcome? {
        Attempt::Taken { fencing_tokens } => {
          return Ok(Grant {
            lease_start: attempt_started,
            fencing_tokens,
          })
        }
        Attempt::Blocked(blocked) => blocked,
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
        _ = waiter.woken() => if let Some(token) = waiter.granted_token() {
          return Ok(Grant { lease_start: attempt_started, fencing_tokens: vec![token] });
        },
        _ = tokio::time::sleep(pause) => {}
        _ = self.closed.cancelled() => return Err(LockError::Closed),
      }
      retry_interval = retry_interval
        .mul_f64(self.retry_backoff.factor)
        .min(self.retry_backoff.max);
    }
  }

  fn dequeue_in_background(&self, groups: &[KeyGroup], waiter_id: &str, undo_owner: &str) {
    let Ok(Some(mut connection)) = self.current_connection() else {
      return;
    };
    let calls: Vec<redis::ScriptInvocation<'static>> = groups
      .iter()
      .map(|group| {
        let mut call = scripts::DEQUEUE.prepare_invoke();
        call
          .key(&group.script_keys)
          .arg(waiter_id)
          .arg(undo_owner)
          .arg(&self.wake_channel);
        call
      })
      .collect();
    tokio::spawn(async move {
      for call in calls {
        if let Err(error) = call.invoke_async::<()>(&mut connection).await {
          tracing::debug!(target: "ferrolock", %error, "leaving the wait queue failed; the entry lapses on its own");
        }
      }
    });
  }

  /// Deletes each key `owner` holds; `true` when every key was released.
  #[tracing::instrument(level = "debug", name = "ferrolock.release", target = "ferrolock", skip_all, fields(service = self.id, ?keys, owner = owner.id()))]
  pub async fn release(&self, keys: &[String], owner: Owner<'_>) -> LockResult<bool> {
    let mut released = 0;
    for group in self.key_groups(keys, owner) {
      released += self.release_script_keys(&group.script_keys, owner).await?;
    }
    tracing::debug!(target: "ferrolock", service = self.id, ?keys, owner = owner.id(), released, "locks released");
    Ok(released == keys.len())
  }

  /// Releases lock keys (already namespaced) that share one hash slot.
  async fn release_lock_keys(&self, lock_keys: Vec<String>, owner: Owner<'_>) -> LockResult<usize> {
    if lock_keys.is_empty() {
      return Ok(0);
    }
    self
      .release_script_keys(&self.script_keys(lock_keys, owner), owner)
      .await
  }

  /// Compare-and-delete of lock keys, handing each over to its next waiter; returns how many were deleted.
  async fn release_script_keys(&self, script_keys: &[String], owner: Owner<'_>) -> LockResult<usize> {
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
  #[tracing::instrument(level = "debug", name = "ferrolock.renew", target = "ferrolock", skip_all, fields(service = self.id, ?keys, owner = owner.id()))]
  pub async fn extend(&self, keys: &[String], owner: Owner<'_>, lease_ttl: Duration) -> LockResult<Option<String>> {
    let mut connection = self.connection().await?;
    for group in self.key_groups(keys, owner) {
      let lost_index: usize = scripts::EXTEND
        .key(&group.script_keys[..group.positions.len()])
        .arg(owner.id())
        .arg(lease_ttl.as_millis().max(1) as u64)
        .invoke_async(&mut connection)
        .await?;
      if lost_index > 0 {
        return Ok(Some(keys[group.positions[lost_index - 1]].clone()));
      }
    }
    Ok(None)
  }

  /// Releases every lock of this namespace held by `owner`; each key is
  /// compared and deleted atomically, never read and deleted in two steps.
  /// A named owner's locks come from its index, at a cost bounded by what it
  /// holds; an owner holding too many to be indexed (more than 127), other
  /// owners, and every owner in a cluster (which keeps no index) are found
  /// by scanning the namespace on every primary.
  pub async fn release_all(&self, owner: Owner<'_>) -> LockResult<usize> {
    match owner {
      Owner::Named(id) if !self.cluster => self.release_indexed(id).await,
      _ => self.release_scanned(owner).await,
    }
  }

  async fn release_indexed(&self, owner: &str) -> LockResult<usize> {
    let mut connection = self.connection().await?;
    let index = self.owner_index_key(owner);
    let indexed: Vec<String> = redis::cmd("HKEYS").arg(&index).query_async(&mut connection).await?;
    if indexed.iter().any(String::is_empty) {
      // Too many locks to index: drop the index first, so locks taken from
      // now on are indexed afresh, and find the rest by scanning.
      redis::cmd("DEL").arg(&index).exec_async(&mut connection).await?;
      return self.release_scanned(Owner::Named(owner)).await;
    }
    // The release script removes each of these from the index, held or not.
    self
      .release_lock_keys(self.lock_keys(&indexed), Owner::Named(owner))
      .await
  }

  /// The keys a named owner's index lists that match `pattern`; `None` when
  /// the owner holds too many locks to be indexed.
  async fn indexed_keys(&self, owner: &str, pattern: &str) -> LockResult<Option<Vec<String>>> {
    let mut connection = self.connection().await?;
    let index = self.owner_index_key(owner);
    let overflowed: bool = redis::cmd("HEXISTS")
      .arg(&index)
      .arg("")
      .query_async(&mut connection)
      .await?;
    if overflowed {
      return Ok(None);
    }
    // At most 127 fields: one HSCAN step with a large COUNT covers them.
    let (_, fields): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
      .arg(&index)
      .arg(0)
      .arg("MATCH")
      .arg(pattern)
      .arg("COUNT")
      .arg(RELEASE_ALL_BATCH)
      .query_async(&mut connection)
      .await?;
    Ok(Some(fields.into_iter().map(|(key, _)| key).collect()))
  }

  async fn release_scanned(&self, owner: Owner<'_>) -> LockResult<usize> {
    let mut scan = self.scan(&self.namespace_pattern).await?;
    let mut released = 0;
    while let Some(found) = self.scan_next(&mut scan).await? {
      for (_, keys) in self.by_slot(found) {
        released += self.release_lock_keys(keys, owner).await?;
      }
    }
    Ok(released)
  }

  /// A SCAN of `pattern` over every primary (the one server outside a cluster).
  async fn scan(&self, pattern: &str) -> LockResult<KeyScan> {
    let mut connection = self.connection().await?;
    let nodes = if self.cluster {
      connection.cluster_primaries().await?.into_iter().map(Some).collect()
    } else {
      vec![None]
    };
    Ok(KeyScan {
      pattern: pattern.to_owned(),
      nodes,
      cursor: 0,
    })
  }

  /// The next batch of keys of `scan`; `None` once every node is done.
  async fn scan_next(&self, scan: &mut KeyScan) -> LockResult<Option<Vec<String>>> {
    let Some(node) = scan.nodes.last().cloned() else {
      return Ok(None);
    };
    let mut connection = self.connection().await?;
    let mut command = redis::cmd("SCAN");
    command
      .arg(scan.cursor)
      .arg("MATCH")
      .arg(&scan.pattern)
      .arg("COUNT")
      .arg(RELEASE_ALL_BATCH);
    let (next, keys): (u64, Vec<String>) = match &node {
      Some((host, port)) => connection.query_node(command, host, *port).await?,
      None => command.query_async(&mut connection).await?,
    };
    scan.cursor = next;
    if next == 0 {
      scan.nodes.pop();
    }
    Ok(Some(keys))
  }
}

/// A held lock as `list_locks` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LockInfo {
  /// The key as callers give it, without the namespace.
  pub key: String,
  /// The holder's owner id (`*` for a lock taken without owner).
  pub owner: String,
  /// Remaining time to live; `None` when the lock does not expire.
  pub ttl: Option<Duration>,
  /// Live callers queued for the key.
  pub waiters: u64,
}

impl LockEngine {
  /// The held locks of this namespace whose key matches `pattern` (a Redis
  /// glob, namespace excluded), optionally only `owner`'s, at most `limit`.
  /// A named owner's locks come from its index, at a cost bounded by what it
  /// holds (unless it holds too many to be indexed); otherwise the namespace
  /// is scanned on every primary until `limit` locks were found.
  pub async fn list_locks(&self, owner: Option<Owner<'_>>, pattern: &str, limit: usize) -> LockResult<Vec<LockInfo>> {
    let mut found = Vec::new();
    if let (Some(Owner::Named(id)), false) = (owner, self.cluster) {
      if let Some(keys) = self.indexed_keys(id, pattern).await? {
        self.describe(self.lock_keys(&keys), owner, limit, &mut found).await?;
        return Ok(found);
      }
    }
    let mut scan = self.scan(&format!("{}{pattern}", escape_glob(&self.namespace))).await?;
    while let Some(keys) = self.scan_next(&mut scan).await? {
      self.describe(keys, owner, limit, &mut found).await?;
      if found.len() >= limit {
        break;
      }
    }
    Ok(found)
  }

  /// Adds the locks among `lock_keys` (namespaced) still held, by `owner`
  /// if given, to `found`, up to `limit`.
  async fn describe(
    &self,
    lock_keys: Vec<String>,
    owner: Option<Owner<'_>>,
    limit: usize,
    found: &mut Vec<LockInfo>,
  ) -> LockResult<()> {
    let mut connection = self.connection().await?;
    for (_, keys) in self.by_slot(lock_keys) {
      let script_keys = self.script_keys(keys.clone(), Owner::Anonymous);
      let described: Vec<(String, i64, u64)> = scripts::INSPECT
        .key(&script_keys[..keys.len() * 3])
        .invoke_async(&mut connection)
        .await?;
      for (key, (holder, pttl, waiters)) in keys.into_iter().zip(described) {
        let wanted = match owner {
          Some(owner) => holder == owner.id(),
          None => !holder.is_empty(),
        };
        if wanted && found.len() < limit {
          found.push(LockInfo {
            key: key[self.namespace.len()..].to_owned(),
            owner: holder,
            ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
            waiters,
          });
        }
      }
    }
    Ok(())
  }

  /// Namespaced keys grouped by hash slot (one group outside a cluster).
  fn by_slot(&self, lock_keys: Vec<String>) -> Vec<(u16, Vec<String>)> {
    let mut groups: Vec<(u16, Vec<String>)> = Vec::new();
    for key in lock_keys {
      let slot = if self.cluster { hash_slot(&key) } else { 0 };
      match groups.iter_mut().find(|(group_slot, _)| *group_slot == slot) {
        Some((_, keys)) => keys.push(key),
        None => groups.push((slot, vec![key])),
      }
    }
    groups
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

pin_project_lite::pin_project! {
  /// `operation`, or `CLOSED` once the service closes (see `unless_closed`).
  /// A plain struct rather than an `async fn`, which would hold the operation twice.
  pub struct UnlessClosed<'a, F> {
    #[pin]
    closed: tokio_util::sync::WaitForCancellationFuture<'a>,
    #[pin]
    operation: F,
  }
}

impl<T, F: std::future::Future<Output = LockResult<T>>> std::future::Future for UnlessClosed<'_, F> {
  type Output = LockResult<T>;

  fn poll(self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
    let this = self.project();
    if this.closed.poll(context).is_ready() {
      return std::task::Poll::Ready(Err(LockError::Closed));
    }
    this.operation.poll(context)
  }
}
