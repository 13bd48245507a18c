//! Wake-on-release: one subscriber connection per service listens on the
//! namespace's wake channel, where the release scripts publish the id of the
//! waiter whose turn it is, and wakes that waiter in process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::connection::ConnectionFactory;

/// Pause before re-subscribing after the subscriber connection failed.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(250);

/// The waiters of one service, by id.
pub struct WakeHub {
  /// Random per service, so waiter ids are unique across processes.
  id_prefix: String,
  next_id: AtomicU64,
  waiters: Mutex<HashMap<String, Arc<Notify>>>,
  listening: AtomicBool,
}

/// A registered waiter; unregistered on drop.
pub struct Waiter<'hub> {
  hub: &'hub WakeHub,
  id: String,
  notify: Arc<Notify>,
}

impl Default for WakeHub {
  fn default() -> Self {
    WakeHub {
      id_prefix: format!("{:016x}", fastrand::u64(..)),
      next_id: AtomicU64::new(0),
      waiters: Mutex::new(HashMap::new()),
      listening: AtomicBool::new(false),
    }
  }
}

impl WakeHub {
  pub fn waiter(&self) -> Waiter<'_> {
    let id = format!("{}:{}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
    let notify = Arc::new(Notify::new());
    self.lock().insert(id.clone(), notify.clone());
    Waiter { hub: self, id, notify }
  }

  /// Whether wake messages currently arrive (else waiters rely on polling).
  pub fn is_listening(&self) -> bool {
    self.listening.load(Ordering::Relaxed)
  }

  fn wake(&self, id: &str) {
    if let Some(notify) = self.lock().get(id) {
      // notify_one stores a permit, so a wake that lands between two
      // attempts is not lost.
      notify.notify_one();
    }
  }

  fn wake_all(&self) {
    for notify in self.lock().values() {
      notify.notify_one();
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
    self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  /// Receives wake messages on `channel` until `closed`, re-subscribing after
  /// connection failures.
  pub async fn listen(self: Arc<Self>, factory: ConnectionFactory, channel: String, closed: CancellationToken) {
    while !closed.is_cancelled() {
      let subscribed = async {
        let mut pubsub = factory.pubsub().await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, crate::error::LockError>(pubsub)
      };
      let pubsub = tokio::select! {
        pubsub = subscribed => pubsub,
        _ = closed.cancelled() => return,
      };
      match pubsub {
        Ok(pubsub) => {
          self.listening.store(true, Ordering::Relaxed);
          // Messages published while we were away are lost: let every waiter retry now.
          self.wake_all();
          let mut messages = pubsub.into_on_message();
          loop {
            tokio::select! {
              message = messages.next() => match message {
                Some(message) => {
                  if let Ok(waiter) = message.get_payload::<String>() {
                    self.wake(&waiter);
                  }
                }
                None => break,
              },
              _ = closed.cancelled() => return,
            }
          }
          self.listening.store(false, Ordering::Relaxed);
          tracing::warn!(target: "ferrolock", "wake-up subscription lost, re-subscribing");
        }
        Err(error) => {
          tracing::warn!(target: "ferrolock", %error, "wake-up subscription failed, waiters poll until it is back");
        }
      }
      tokio::select! {
        _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        _ = closed.cancelled() => return,
      }
    }
  }
}

impl Waiter<'_> {
  pub fn id(&self) -> &str {
    &self.id
  }

  /// Resolves when this waiter's turn was announced.
  pub async fn woken(&self) {
    self.notify.notified().await
  }
}

impl Drop for Waiter<'_> {
  fn drop(&mut self) {
    self.hub.lock().remove(&self.id);
  }
}
