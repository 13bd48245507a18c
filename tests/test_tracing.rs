//! The engine's `tracing` spans and events: named, carrying keys and owner,
//! never a password.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolock::engine::{Owner, Wait};
use ferrolock::lease::HeldLease;
use ferrolock::options::{ExecuteArgs, Input};
use support::RedisServer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
  fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
    self.0.push_str(&format!(" {}={value:?}", field.name()));
  }
}

impl<S: Subscriber> Layer<S> for Recorder {
  fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
    let mut line = format!("span {}", attrs.metadata().name());
    attrs.record(&mut Fields(&mut line));
    self.0.lock().unwrap().push(line);
  }

  fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
    let mut line = format!("event {}", event.metadata().level());
    event.record(&mut Fields(&mut line));
    self.0.lock().unwrap().push(line);
  }
}

#[tokio::test]
async fn acquire_wait_renew_release_and_loss_are_traced_without_secrets() {
  let server = RedisServer::start();
  let _: () = redis::cmd("CONFIG")
    .arg("SET")
    .arg("requirepass")
    .arg("trace-secret")
    .query(&mut server.client())
    .unwrap();
  let recorder = Recorder::default();
  let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
  let url = format!("redis://:trace-secret@127.0.0.1:{}", server.port);
  let engine = Arc::new(support::engine_for(
    &url,
    &[("maximumRetryInterval", Input::Number(20.0))],
  ));
  let keys = vec!["job".to_string()];
  engine
    .acquire(&keys, Owner::from_id("holder"), None, Wait::No)
    .await
    .unwrap();
  let args = ExecuteArgs {
    timeout: Some(Duration::from_secs(1)),
    lease_ttl: Duration::from_secs(1),
  };
  // Times out waiting, then gets the key once released, renews, and is lost.
  assert!(HeldLease::acquire(engine.clone(), keys.clone(), args.clone(), |_| {})
    .await
    .is_err());
  engine.release(&keys, Owner::from_id("holder")).await.unwrap();
  let lease = HeldLease::acquire(engine.clone(), keys.clone(), args, |_| {})
    .await
    .unwrap();
  tokio::time::sleep(Duration::from_millis(400)).await;
  let mut admin = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
  let _: () = redis::cmd("DEL").arg("medusa_lock:job").query(&mut admin).unwrap();
  tokio::time::sleep(Duration::from_millis(400)).await;
  assert!(lease.finish().await.is_err());

  let lines = recorder.0.lock().unwrap().clone();
  let has = |needle: &str| lines.iter().any(|line| line.contains(needle));
  for span in [
    "span ferrolock.acquire",
    "span ferrolock.wait",
    "span ferrolock.renew",
    "span ferrolock.release",
  ] {
    assert!(has(span), "{span} missing from {lines:#?}");
  }
  assert!(has("keys=[\"job\"] owner=\"holder\""), "{lines:#?}");
  assert!(has("timed out waiting for the lock"), "{lines:#?}");
  assert!(has("waited_ms="), "{lines:#?}");
  assert!(has("lease renewed"), "{lines:#?}");
  assert!(has("event WARN message=Lost the lock for key(s) \"job\""), "{lines:#?}");
  assert!(!lines.iter().any(|line| line.contains("trace-secret")), "{lines:#?}");
}
