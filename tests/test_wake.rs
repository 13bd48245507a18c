#![recursion_limit = "256"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use ferrolock::engine::{Owner, Wait};
use ferrolock::options::Input;
use redis::Commands;
use support::RedisServer;
use tokio::time::Instant;

fn keys(names: &[&str]) -> Vec<String> {
  names.iter().map(|name| name.to_string()).collect()
}

fn wait_for(duration: Duration) -> Wait {
  Wait::Until {
    deadline: Instant::now() + duration,
  }
}

fn named(id: &str) -> Owner<'_> {
  Owner::Named(id)
}

/// Polling every 15–30 s: only a wake-up (or the holder's TTL) hands the key
/// over within the few seconds these tests allow.
fn slow_polling() -> [(&'static str, Input); 2] {
  [
    ("defaultRetryInterval", Input::Number(30_000.0)),
    ("maximumRetryInterval", Input::Number(30_000.0)),
  ]
}

/// Spawns a waiter for `key` as `owner` with a 60 s timeout.
fn spawn_waiter(
  engine: &Arc<ferrolock::engine::LockEngine>,
  owner: &'static str,
  timeout: Duration,
) -> tokio::task::JoinHandle<ferrolock::error::LockResult<()>> {
  let engine = engine.clone();
  tokio::spawn(async move {
    engine
      .acquire(&keys(&["k"]), named(owner), None, wait_for(timeout))
      .await
      .map(|_| ())
  })
}

#[tokio::test]
async fn a_release_wakes_the_waiter_even_with_30s_polling() {
  let server = RedisServer::start();
  let holder = server.engine(&[]);
  let engine = Arc::new(server.engine(&slow_polling()));
  holder
    .acquire(&keys(&["k"]), named("holder"), None, Wait::No)
    .await
    .unwrap();
  let waiter = spawn_waiter(&engine, "waiter", Duration::from_secs(60));
  tokio::time::sleep(Duration::from_millis(200)).await;
  assert!(holder.release(&keys(&["k"]), named("holder")).await.unwrap());
  tokio::time::timeout(Duration::from_secs(3), waiter)
    .await
    .expect("woken by the release, not by a poll 15–30 s later")
    .unwrap()
    .unwrap();
  let owner: String = server.client().get("medusa_lock:k").unwrap();
  assert_eq!(owner, "waiter");
}

#[tokio::test]
async fn a_waiter_blocked_by_a_ttl_sleeps_no_longer_than_it() {
  let server = RedisServer::start();
  let holder = server.engine(&[]);
  let engine = Arc::new(server.engine(&slow_polling()));
  holder
    .acquire(&keys(&["k"]), named("holder"), Some(Duration::from_secs(1)), Wait::No)
    .await
    .unwrap();
  let waiter = spawn_waiter(&engine, "waiter", Duration::from_secs(60));
  tokio::time::timeout(Duration::from_secs(4), waiter)
    .await
    .expect("the 1 s expiry is noticed, not a poll 15–30 s later")
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order_and_a_newcomer_waits_its_turn() {
  let server = RedisServer::start();
  let holder = server.engine(&[]);
  let engine = Arc::new(server.engine(&slow_polling()));
  holder
    .acquire(&keys(&["k"]), named("holder"), None, Wait::No)
    .await
    .unwrap();
  let mut redis = server.client();
  let mut waiters = Vec::new();
  for index in 0..4 {
    let engine = engine.clone();
    let url = server.url();
    waiters.push(tokio::spawn(async move {
      let owner = format!("w{index}");
      engine
        .acquire(&keys(&["k"]), named(&owner), None, wait_for(Duration::from_secs(20)))
        .await
        .unwrap();
      let mut redis = redis::Client::open(url).unwrap().get_connection().unwrap();
      let _: () = redis.rpush("order", &owner).unwrap();
      assert!(engine.release(&keys(&["k"]), named(&owner)).await.unwrap());
    }));
    // Each waiter is queued before the next one arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while redis.zcard::<_, usize>("ferrolock:q:{medusa_lock:k}").unwrap() < index + 1 {
      assert!(std::time::Instant::now() < deadline, "waiter {index} never queued");
      tokio::time::sleep(Duration::from_millis(5)).await;
    }
  }
  // The key is free, but four waiters are queued: a newcomer may not jump the queue.
  let _: () = redis.del("medusa_lock:k").unwrap();
  let error = holder
    .acquire(&keys(&["k"]), named("newcomer"), None, Wait::No)
    .await
    .unwrap_err();
  assert_eq!(error.code(), "LOCK_CONFLICT");
  let _: () = redis.set("medusa_lock:k", "holder").unwrap();
  holder.release(&keys(&["k"]), named("holder")).await.unwrap();
  for waiter in waiters {
    tokio::time::timeout(Duration::from_secs(5), waiter)
      .await
      .expect("each release wakes the next waiter")
      .unwrap();
  }
  let order: Vec<String> = redis.lrange("order", 0, -1).unwrap();
  assert_eq!(order, vec!["w0", "w1", "w2", "w3"]);
  // Only the namespace's fencing counter stays, by design.
  let leftovers: Vec<String> = redis.keys("ferrolock:*").unwrap();
  assert_eq!(
    leftovers,
    vec!["ferrolock:f:medusa_lock:"],
    "queues and indexes are gone once empty"
  );
}

#[tokio::test]
async fn a_timed_out_waiter_leaves_the_queue_and_the_next_one_is_woken() {
  let server = RedisServer::start();
  let holder = server.engine(&[]);
  let engine = Arc::new(server.engine(&slow_polling()));
  holder
    .acquire(&keys(&["k"]), named("holder"), None, Wait::No)
    .await
    .unwrap();
  let first = spawn_waiter(&engine, "first", Duration::from_millis(1500));
  tokio::time::sleep(Duration::from_millis(300)).await;
  let second = spawn_waiter(&engine, "second", Duration::from_secs(60));
  assert_eq!(first.await.unwrap().unwrap_err().code(), "LOCK_TIMEOUT");
  // Had `first` stayed queued, this release would announce it, and `second`
  // would only notice on its next poll, 15–30 s later.
  assert!(holder.release(&keys(&["k"]), named("holder")).await.unwrap());
  tokio::time::timeout(Duration::from_secs(3), second)
    .await
    .expect("the release wakes the waiter now at the head")
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn release_all_of_a_named_owner_reads_its_index_not_the_namespace() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  let mut redis = server.client();
  engine
    .acquire(&keys(&["a", "b"]), named("me"), Some(Duration::from_secs(30)), Wait::No)
    .await
    .unwrap();
  engine
    .acquire(&keys(&["c"]), named("me"), None, Wait::No)
    .await
    .unwrap();
  engine
    .acquire(&keys(&["d"]), named("other"), None, Wait::No)
    .await
    .unwrap();
  // A lock of "me" the index does not know about (e.g. taken by a Medusa instance).
  let _: () = redis.set("medusa_lock:e", "me").unwrap();
  let mut members: Vec<String> = redis.hkeys("ferrolock:o:{medusa_lock:}me").unwrap();
  members.sort();
  assert_eq!(members, vec!["a", "b", "c"]);
  assert_eq!(engine.release_all(named("me")).await.unwrap(), 3);
  let mut left: Vec<String> = redis.keys("*").unwrap();
  left.retain(|key| key != "ferrolock:f:medusa_lock:");
  left.sort();
  assert_eq!(
    left,
    vec!["ferrolock:o:{medusa_lock:}other", "medusa_lock:d", "medusa_lock:e"]
  );
}

#[tokio::test]
async fn an_owner_holding_more_than_the_index_keeps_is_found_by_scanning() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  let mut redis = server.client();
  let many: Vec<String> = (0..130).map(|i| format!("bulk-{i}")).collect();
  engine
    .acquire(&many[..100], named("bulk"), None, Wait::No)
    .await
    .unwrap();
  engine
    .acquire(&many[100..], named("bulk"), None, Wait::No)
    .await
    .unwrap();
  let indexed: Vec<String> = redis.hkeys("ferrolock:o:{medusa_lock:}bulk").unwrap();
  assert_eq!(indexed.len(), 128, "127 keys and the overflow mark");
  assert!(indexed.contains(&String::new()));
  let listed = engine.list_locks(Some(named("bulk")), "*", 1000).await.unwrap();
  assert_eq!(listed.len(), 130);
  assert_eq!(engine.release_all(named("bulk")).await.unwrap(), 130);
  let left: Vec<String> = redis.keys("*").unwrap();
  assert_eq!(left, vec!["ferrolock:f:medusa_lock:"]);
  // Indexed afresh afterwards.
  engine.acquire(&many[..2], named("bulk"), None, Wait::No).await.unwrap();
  let mut indexed: Vec<String> = redis.hkeys("ferrolock:o:{medusa_lock:}bulk").unwrap();
  indexed.sort();
  assert_eq!(indexed, vec!["bulk-0", "bulk-1"]);
}

/// 10,000 keys, the most a call takes: more than Lua's `unpack` passes at
/// once, so the scripts' chunked MGET/EXISTS/DEL/HDEL all run more than once.
#[tokio::test]
async fn the_largest_call_takes_and_releases_every_key_and_wakes_a_waiter() {
  let server = RedisServer::start();
  let holder = server.engine(&[]);
  let engine = Arc::new(server.engine(&slow_polling()));
  let many: Vec<String> = (0..ferrolock::options::MAX_KEYS_PER_CALL)
    .map(|i| format!("k{i}"))
    .collect();
  let namespaced: Vec<String> = many.iter().map(|key| format!("medusa_lock:{key}")).collect();
  let grant = holder
    .acquire(&many, named("holder"), Some(Duration::from_secs(60)), Wait::No)
    .await
    .unwrap();
  assert_eq!(grant.fencing_tokens.len(), many.len());
  let mut redis = server.client();
  let owners: Vec<Option<String>> = redis.mget(&namespaced).unwrap();
  assert!(owners.iter().all(|owner| owner.as_deref() == Some("holder")));

  // The last key is held, so a call that needs it gets nothing, not even its free key.
  let blocked = holder
    .acquire(&keys(&["free", "k9999"]), named("other"), None, Wait::No)
    .await
    .unwrap_err();
  assert_eq!(blocked, ferrolock::error::LockError::Conflict { key: "k9999".into() });
  let free: Option<String> = redis.get("medusa_lock:free").unwrap();
  assert_eq!(free, None);

  // A waiter queued on a key near the end is handed it when the holder releases all.
  let waiter = {
    let engine = engine.clone();
    tokio::spawn(async move {
      engine
        .acquire(
          &keys(&["k9998"]),
          named("waiter"),
          None,
          wait_for(Duration::from_secs(60)),
        )
        .await
        .map(|_| ())
    })
  };
  tokio::time::sleep(Duration::from_millis(200)).await;
  assert!(holder.release(&many, named("holder")).await.unwrap());
  tokio::time::timeout(Duration::from_secs(3), waiter)
    .await
    .expect("woken by the release, not by a poll 15-30 s later")
    .unwrap()
    .unwrap();
  let remaining: usize = redis.exists(&namespaced).unwrap();
  assert_eq!(remaining, 1, "only the waiter's key is held after the release");
  let owner: String = redis.get("medusa_lock:k9998").unwrap();
  assert_eq!(owner, "waiter");
  // Too many keys to index: only the overflow mark is left, lapsing with the lease.
  let index: Vec<String> = redis.hkeys("ferrolock:o:{medusa_lock:}holder").unwrap();
  assert_eq!(
    index,
    vec![String::new()],
    "no released key stays in the holder's index"
  );
}

/// The owner index lives as long as the owner's longest lock: created with
/// the first lease, lengthened by a longer one, never shortened, and kept
/// without expiry while a lock without one is held.
#[tokio::test]
async fn the_owner_index_lives_as_long_as_the_longest_lock() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  let mut redis = server.client();
  let index = "ferrolock:o:{medusa_lock:}owner";
  let index_ttl = |redis: &mut redis::Connection| -> i64 { redis.pttl(index).unwrap() };
  let take = |key: &'static str, lease_ms: Option<u64>| {
    let engine = &engine;
    async move {
      engine
        .acquire(
          &keys(&[key]),
          named("owner"),
          lease_ms.map(Duration::from_millis),
          Wait::No,
        )
        .await
        .unwrap();
    }
  };

  take("a", Some(10_000)).await;
  let ttl = index_ttl(&mut redis);
  assert!(ttl > 9_000 && ttl <= 10_000, "the first lease sets it: {ttl}");
  take("b", Some(5_000)).await;
  let ttl = index_ttl(&mut redis);
  assert!(ttl > 9_000, "a shorter lease does not shorten it: {ttl}");
  take("c", Some(60_000)).await;
  let ttl = index_ttl(&mut redis);
  assert!(ttl > 59_000, "a longer lease lengthens it: {ttl}");
  take("d", None).await;
  assert_eq!(
    index_ttl(&mut redis),
    -1,
    "a lock without expiry keeps it without expiry"
  );
  take("e", Some(1_000)).await;
  assert_eq!(index_ttl(&mut redis), -1, "and a lease after that does not give it one");

  let fresh = "ferrolock:o:{medusa_lock:}fresh";
  engine
    .acquire(&keys(&["f"]), named("fresh"), None, Wait::No)
    .await
    .unwrap();
  let ttl: i64 = redis.pttl(fresh).unwrap();
  assert_eq!(ttl, -1, "an index started by a lock without expiry has none");
  let members: Vec<String> = redis.hkeys(fresh).unwrap();
  assert_eq!(members, vec!["f".to_string()]);
}
