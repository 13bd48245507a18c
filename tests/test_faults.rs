//! The engine on a bad day: dropped connections, a stalled server, wrong
//! credentials, a lease that ends between renewals, and close() mid-call.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolock::engine::{Owner, Wait};
use ferrolock::error::LockError;
use ferrolock::lease::HeldLease;
use ferrolock::options::{ExecuteArgs, Input};
use redis::Commands;
use support::RedisServer;
use tokio::time::Instant;

fn keys(names: &[&str]) -> Vec<String> {
  names.iter().map(|name| name.to_string()).collect()
}

/// Makes the server stop answering every client for `ms`.
fn pause_server(server: &RedisServer, ms: u64) {
  let _: () = redis::cmd("CLIENT")
    .arg("PAUSE")
    .arg(ms)
    .arg("ALL")
    .query(&mut server.client())
    .unwrap();
}

#[tokio::test]
async fn the_first_call_after_the_server_dropped_an_idle_connection_succeeds() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  engine
    .acquire(&keys(&["a"]), Owner::from_id("me"), None, Wait::No)
    .await
    .unwrap();
  let killed: i64 = redis::cmd("CLIENT")
    .arg("KILL")
    .arg("TYPE")
    .arg("normal")
    .query(&mut server.client())
    .unwrap();
  assert!(killed >= 1, "our connection was killed");
  tokio::time::sleep(Duration::from_millis(100)).await;
  engine
    .acquire(&keys(&["b"]), Owner::from_id("me"), None, Wait::No)
    .await
    .expect("the dropped connection is replaced, not used");
  let held: bool = server.client().exists("medusa_lock:b").unwrap();
  assert!(held);
}

#[tokio::test]
async fn wrong_or_missing_credentials_fail_connect_with_the_servers_reason() {
  let server = RedisServer::start();
  let _: () = redis::cmd("CONFIG")
    .arg("SET")
    .arg("requirepass")
    .arg("right-secret")
    .query(&mut server.client())
    .unwrap();
  let url = format!("redis://:wrong-secret@127.0.0.1:{}", server.port);
  for (url, reason) in [(url, "WRONGPASS"), (server.url(), "NOAUTH")] {
    let engine = support::engine_for(&url, &[]);
    let started = Instant::now();
    let error = engine.connection().await.err().expect("connect must fail");
    assert_eq!(error.code(), "REDIS_ERROR");
    assert!(error.to_string().contains(reason), "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");
    // Far below the 5 s connect timeout: the reason is not retried away.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
  }
}

#[tokio::test]
async fn a_lease_whose_renewals_stall_past_its_expiry_is_reported_lost_in_time() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  let lost_at = Arc::new(Mutex::new(None));
  let sink = lost_at.clone();
  let args = ExecuteArgs {
    timeout: None,
    lease_ttl: Duration::from_secs(1),
  };
  let lease = HeldLease::acquire(engine.clone(), keys(&["job"]), args, move |error| {
    *sink.lock().unwrap() = Some((error, Instant::now()));
  })
  .await
  .unwrap();
  let pttl: u64 = server.client().pttl("medusa_lock:job").unwrap();
  // Redis drops the key no later than this (PTTL rounds down to the ms).
  let expires_by = Instant::now() + Duration::from_millis(pttl + 1);
  // The renewals block for 3 s; the key may expire 1 s after the grant.
  pause_server(&server, 3000);
  tokio::time::sleep(Duration::from_millis(1300)).await;
  let (error, at) = lost_at
    .lock()
    .unwrap()
    .clone()
    .expect("loss reported by the lease's expiry");
  assert_eq!(error.code(), "LOCK_LOST");
  assert!(
    at <= expires_by,
    "reported {:?} after the key could expire",
    at - expires_by
  );
  assert_eq!(lease.finish().await.unwrap_err().code(), "LOCK_LOST");
}

#[tokio::test]
async fn finishing_after_the_key_changed_hands_reports_the_lease_lost() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  let args = ExecuteArgs {
    timeout: None,
    lease_ttl: Duration::from_secs(30),
  };
  let lease = HeldLease::acquire(engine.clone(), keys(&["job"]), args, |_| {})
    .await
    .unwrap();
  // Taken over between two renewals (they run every 10 s here).
  let _: () = server.client().set("medusa_lock:job", "someone-else").unwrap();
  assert_eq!(lease.finish().await.unwrap_err().code(), "LOCK_LOST");
  let holder: String = server.client().get("medusa_lock:job").unwrap();
  assert_eq!(holder, "someone-else");
}

#[tokio::test]
async fn close_settles_a_call_stuck_on_a_stalled_server() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  engine.connection().await.unwrap();
  pause_server(&server, 4000);
  let call = {
    let engine = engine.clone();
    tokio::spawn(async move {
      engine
        .unless_closed(engine.acquire(&keys(&["k"]), Owner::from_id("me"), None, Wait::No))
        .await
    })
  };
  tokio::time::sleep(Duration::from_millis(100)).await;
  engine.close();
  let settled = tokio::time::timeout(Duration::from_millis(500), call).await;
  assert_eq!(
    settled.expect("settled at close").unwrap().unwrap_err(),
    LockError::Closed
  );
}

#[tokio::test]
async fn oversized_keep_alive_is_capped_not_a_panic() {
  let server = RedisServer::start();
  let redis_options = Input::Object(vec![("keepAlive".into(), Input::Number(1e300))]);
  let engine = server.engine(&[("redisOptions", redis_options)]);
  engine
    .acquire(&keys(&["k"]), Owner::from_id("me"), None, Wait::No)
    .await
    .unwrap();
}
