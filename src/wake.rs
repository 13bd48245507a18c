//! Wake-on-release: one subscriber connection per service listens on the
//! namespace's wake channel, where the release scripts publish the id of the
//! waiter whose turn it is (`<id>`), or that was just granted its lock with
//! its fencing token (`<id> + <token>`), and wakes that waiter in process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
  waiters: Mutex<HashMap<String, Arc<WaiterSlot>>>,
}

#[derive(Default)]
struct WaiterSlot {
  notify: Notify,
  /// The fencing token of a direct grant; 0 until then (tokens start above it).
  granted_token: AtomicU64,
}

/// A registered waiter; unregistered on drop.
pub struct Waiter<'hub> {
  hub: &'hub WakeHub,
  id: String,
  slot: Arc<WaiterSlot>,
}

impl Default for WakeHub {
  fn default() -> Self {
    WakeHub {
      id_prefix: format!("{:016x}", fastrand::u64(..)),
      next_id: AtomicU64::new(0),
      waiters: Mutex::new(HashMap::new()),
    }
  }
}

impl WakeHub {
  pub fn waiter(&self) -> Waiter<'_> {
    let id = format!("{}:{}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed));
    let slot = Arc::new(WaiterSlot::default());
    self.lock().insert(id.clone(), slot.clone());
    Waiter { hub: self, id, slot }
  }

  fn deliver(&self, message: &str) {
    let (id, granted_token) = match message.split_once(" + ") {
      Some((id, token)) => (id, token.parse::<u64>().ok()),
      None => (message, None),
    };
    if let Some(slot) = self.lock().get(id) {
      if let Some(token) = granted_token {
        slot.granted_token.store(token, Ordering::Release);
      }
      // notify_one stores a permit, so a wake that lands between two
      // attempts is not lost.
      slot.notify.notify_one();
    }
  }

  fn wake_all(&self) {
    for slot in self.lock().values() {
      slot.notify.notify_one();
    }
  }

  fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WaiterSlot>>> {
    self.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  /// Receives wake messages on `channel` until `closed`, re-subscribing after
  /// connection failures.
  pub async fn listen(self: Arc<Self>, factory: ConnectionFactory, channel: String, closed: CancellationToken) {
    let mut attempt = 0;
    while !closed.is_cancelled() {
      attempt += 1;
      let subscribed = async {
        let mut pubsub = factory.pubsub(attempt).await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, crate::error::LockError>(pubsub)
      };
      let pubsub = tokio::select! {
        pubsub = subscribed => pubsub,
        _ = closed.cancelled() => return,
      };
      match pubsub {
        Ok(pubsub) => {
          // Messages published while we were away are lost: let every waiter retry now.
          self.wake_all();
          let mut messages = pubsub.into_on_message();
          loop {
            tokio::select! {
              message = messages.next() => match message {
                Some(message) => {
                  if let Ok(text) = message.get_payload::<String>() {
                    self.deliver(&text);
                  }
                }
                None => break,
              },
              _ = closed.cancelled() => return,
            }
          }
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

  /// Resolves when this waiter's turn (or grant) was announced.
  pub async fn woken(&self) {
    self.slot.notify.notified().await
  }

  /// The fencing token, once a release set the lock to this waiter's owner.
  pub fn granted_token(&self) -> Option<u64> {
    match self.slot.granted_token.load(Ordering::Acquire) {
      0 => None,
      token => Some(token),
    }
  }
}

impl Drop for Waiter<'_> {
  fn drop(&mut self) {
    self.hub.lock().remove(&self.id);
  }
}
