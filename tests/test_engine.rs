mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolock::engine::{LockEngine, Owner, Wait};
use ferrolock::error::LockError;
use ferrolock::lease::HeldLease;
use ferrolock::options::{ExecuteArgs, Input};
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

#[tokio::test]
async fn multi_key_acquire_is_all_or_nothing() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  engine
    .acquire(&keys(&["b"]), Owner::from_id("other"), None, Wait::No)
    .await
    .unwrap();

  let error = engine
    .acquire(&keys(&["a", "b", "c"]), Owner::from_id("me"), None, Wait::No)
    .await
    .unwrap_err();
  assert_eq!(error, LockError::Conflict { key: "b".into() });
  let mut redis = server.client();
  let a: Option<String> = redis.get("medusa_lock:a").unwrap();
  let c: Option<String> = redis.get("medusa_lock:c").unwrap();
  assert_eq!((a, c), (None, None), "no key of a failed call stays taken");

  engine
    .acquire(
      &keys(&["a", "c"]),
      Owner::from_id("me"),
      Some(Duration::from_secs(30)),
      Wait::No,
    )
    .await
    .unwrap();
  let owner: String = redis.get("medusa_lock:a").unwrap();
  let ttl: i64 = redis.pttl("medusa_lock:c").unwrap();
  assert_eq!(owner, "me");
  assert!(ttl > 29_000 && ttl <= 30_000, "ttl {ttl}");
}

#[tokio::test]
async fn same_owner_reenters_and_refreshes_but_anonymous_does_not() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  let mut redis = server.client();
  engine
    .acquire(
      &keys(&["k"]),
      Owner::from_id("me"),
      Some(Duration::from_secs(5)),
      Wait::No,
    )
    .await
    .unwrap();
  engine
    .acquire(
      &keys(&["k"]),
      Owner::from_id("me"),
      Some(Duration::from_secs(50)),
      wait_for(Duration::from_secs(1)),
    )
    .await
    .unwrap();
  let ttl: i64 = redis.pttl("medusa_lock:k").unwrap();
  assert!(ttl > 45_000, "re-entry refreshed the TTL: {ttl}");

  engine
    .acquire(&keys(&["anon"]), Owner::from_id("*"), None, Wait::No)
    .await
    .unwrap();
  let value: String = redis.get("medusa_lock:anon").unwrap();
  assert_eq!(value, "*");
  let error = engine
    .acquire(&keys(&["anon"]), Owner::from_id("*"), None, Wait::No)
    .await
    .unwrap_err();
  assert_eq!(error.code(), "LOCK_CONFLICT");
}

#[tokio::test]
async fn release_only_deletes_the_owners_keys() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  engine
    .acquire(&keys(&["a"]), Owner::from_id("me"), None, Wait::No)
    .await
    .unwrap();
  engine
    .acquire(&keys(&["b"]), Owner::from_id("other"), None, Wait::No)
    .await
    .unwrap();
  assert!(!engine.release(&keys(&["a", "b"]), Owner::from_id("me")).await.unwrap());
  let mut redis = server.client();
  let b: String = redis.get("medusa_lock:b").unwrap();
  assert_eq!(b, "other");
  let a: Option<String> = redis.get("medusa_lock:a").unwrap();
  assert_eq!(a, None);
  assert!(engine.release(&keys(&["b"]), Owner::from_id("other")).await.unwrap());
}

#[tokio::test]
async fn a_waiter_gets_the_key_after_release_and_times_out_otherwise() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  engine
    .acquire(&keys(&["k"]), Owner::from_id("holder"), None, Wait::No)
    .await
    .unwrap();
  let error = engine
    .acquire(
      &keys(&["k"]),
      Owner::from_id("waiter"),
      None,
      wait_for(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
  assert_eq!(error, LockError::Timeout);

  let waiter = {
    let engine = engine.clone();
    tokio::spawn(async move {
      engine
        .acquire(
          &keys(&["k"]),
          Owner::from_id("waiter"),
          None,
          wait_for(Duration::from_secs(5)),
        )
        .await
    })
  };
  tokio::time::sleep(Duration::from_millis(100)).await;
  engine.release(&keys(&["k"]), Owner::from_id("holder")).await.unwrap();
  waiter.await.unwrap().unwrap();
  let owner: String = server.client().get("medusa_lock:k").unwrap();
  assert_eq!(owner, "waiter");
}

#[tokio::test]
async fn opposite_key_orders_do_not_deadlock() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  let mut tasks = Vec::new();
  for (index, order) in [["a", "b"], ["b", "a"]].into_iter().enumerate() {
    let engine = engine.clone();
    tasks.push(tokio::spawn(async move {
      for round in 0..200 {
        let owner = format!("{index}-{round}");
        engine
          .acquire(
            &keys(&order),
            Owner::from_id(&owner),
            Some(Duration::from_secs(5)),
            wait_for(Duration::from_secs(5)),
          )
          .await
          .unwrap();
        assert!(engine.release(&keys(&order), Owner::from_id(&owner)).await.unwrap());
      }
    }));
  }
  for task in tasks {
    task.await.unwrap();
  }
}

#[tokio::test]
async fn release_all_stays_inside_a_glob_namespace() {
  let server = RedisServer::start();
  let engine = server.engine(&[("namespace", Input::String("shop[1]*:".into()))]);
  let mut redis = server.client();
  // Anonymous locks are found by scanning the namespace.
  let _: () = redis.set("shop1x:a", "*").unwrap();
  let _: () = redis.set("shop[1]*:zz-outside", "*").unwrap();
  let _: () = redis.set("shop[1]*extra:b", "*").unwrap();
  engine
    .acquire(&keys(&["a", "b"]), Owner::from_id("*"), None, Wait::No)
    .await
    .unwrap();
  engine
    .acquire(&keys(&["c"]), Owner::from_id("other"), None, Wait::No)
    .await
    .unwrap();

  assert_eq!(
    engine.release_all(Owner::Anonymous).await.unwrap(),
    3,
    "a, b and the in-namespace zz-outside"
  );
  let left: Vec<String> = {
    let mut left: Vec<String> = redis.keys("shop*").unwrap();
    left.sort();
    left
  };
  assert_eq!(left, vec!["shop1x:a", "shop[1]*:c", "shop[1]*extra:b"]);
}

#[tokio::test]
async fn a_lease_reports_a_deleted_key_as_lost() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  let lost = Arc::new(Mutex::new(None));
  let args = ExecuteArgs {
    timeout: None,
    lease_ttl: Duration::from_secs(1),
  };
  let sink = lost.clone();
  let lease = HeldLease::acquire(engine.clone(), keys(&["job"]), args, move |error| {
    *sink.lock().unwrap() = Some(error);
  })
  .await
  .unwrap();
  let _: () = server.client().del("medusa_lock:job").unwrap();
  tokio::time::sleep(Duration::from_millis(700)).await;
  let reported = lost.lock().unwrap().clone();
  assert_eq!(reported.map(|error| error.code()), Some("LOCK_LOST"));
  assert_eq!(lease.finish().await.unwrap_err().code(), "LOCK_LOST");
}

#[tokio::test]
async fn a_lease_outlives_its_ttl_while_renewed() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  let args = ExecuteArgs {
    timeout: None,
    lease_ttl: Duration::from_secs(1),
  };
  let lease = HeldLease::acquire(engine.clone(), keys(&["job"]), args, |error| panic!("lost: {error}"))
    .await
    .unwrap();
  tokio::time::sleep(Duration::from_millis(2500)).await;
  let ttl: i64 = server.client().pttl("medusa_lock:job").unwrap();
  assert!(ttl > 0, "still held after 2.5 lease lengths: {ttl}");
  lease.finish().await.unwrap();
  let exists: bool = server.client().exists("medusa_lock:job").unwrap();
  assert!(!exists);
}

#[tokio::test]
async fn an_unreachable_server_fails_within_the_connect_timeout() {
  let port = std::net::TcpListener::bind("127.0.0.1:0")
    .unwrap()
    .local_addr()
    .unwrap()
    .port();
  let redis_options = Input::Object(vec![("connectTimeout".into(), Input::Number(500.0))]);
  let engine: LockEngine =
    support::engine_for(&format!("redis://127.0.0.1:{port}"), &[("redisOptions", redis_options)]);
  let started = Instant::now();
  let error = engine
    .acquire(&keys(&["k"]), Owner::from_id("me"), None, Wait::No)
    .await
    .unwrap_err();
  assert_eq!(error.code(), "REDIS_ERROR");
  assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test]
async fn close_rejects_later_calls_and_stops_waiters() {
  let server = RedisServer::start();
  let engine = Arc::new(server.engine(&[]));
  engine
    .acquire(&keys(&["k"]), Owner::from_id("holder"), None, Wait::No)
    .await
    .unwrap();
  let waiter = {
    let engine = engine.clone();
    tokio::spawn(async move {
      engine
        .acquire(
          &keys(&["k"]),
          Owner::from_id("waiter"),
          None,
          wait_for(Duration::from_secs(30)),
        )
        .await
    })
  };
  tokio::time::sleep(Duration::from_millis(100)).await;
  engine.close();
  assert_eq!(waiter.await.unwrap().unwrap_err(), LockError::Closed);
  assert_eq!(
    engine
      .release(&keys(&["k"]), Owner::from_id("holder"))
      .await
      .unwrap_err(),
    LockError::Closed
  );
}

#[tokio::test]
async fn a_lock_key_holding_another_type_is_never_overwritten() {
  let server = RedisServer::start();
  let engine = server.engine(&[]);
  let mut redis = server.client();
  let _: () = redis.hset("medusa_lock:h", "field", "value").unwrap();
  let error = engine
    .acquire(&keys(&["a", "h"]), Owner::from_id("me"), None, Wait::No)
    .await
    .unwrap_err();
  assert!(
    matches!(&error, LockError::Redis(text) if text.contains("WRONGTYPE")),
    "{error:?}"
  );
  let kind: String = redis::cmd("TYPE").arg("medusa_lock:h").query(&mut redis).unwrap();
  assert_eq!(kind, "hash", "the foreign value is left as it was");
  let a: Option<String> = redis.get("medusa_lock:a").unwrap();
  assert_eq!(a, None, "no key of the failed call stays taken");
}
