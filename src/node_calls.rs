//! How native calls settle in JS without a promise (and threadsafe function)
//! per call: each call carries an id, its outcome is queued here, and one
//! threadsafe function per service hands every queued outcome to JS in one
//! batch — one wake-up of the event loop for many completions under load.
//! `index.js` keeps the promise of each id and settles it from the batch.
//! The calls themselves run in one driver task per service (see `drive`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Env;

use crate::error::{LockError, LockResult};

/// Builds a JS value on the JS thread.
pub type Conversion = Box<dyn FnOnce(&Env) -> Result<napi::sys::napi_value> + Send>;

/// What a settled call resolves to, converted on the JS thread.
pub enum Payload {
  Nothing,
  Bool(bool),
  Count(u32),
  /// Any value that converts itself (fencing tokens, a lock list, a lease).
  Value(Conversion),
}

struct Settled {
  id: u32,
  outcome: LockResult<Payload>,
}

/// The outcomes handed to JS in one call: `[id, error | null, value, …]`.
pub struct SettledBatch(Vec<Settled>);

type Notifier = ThreadsafeFunction<(), Unknown<'static>, SettledBatch, Status, false, true>;

/// A call on its way: runs until it has settled its id.
type Call = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
struct Queue {
  settled: Vec<Settled>,
  /// A batch is already on its way to JS; it will take what is queued now.
  scheduled: bool,
}

pub struct Completions {
  queue: Mutex<Queue>,
  notifier: Mutex<Option<Notifier>>,
  /// Calls begun and not yet handed to JS. While there are any, the
  /// notifier holds the event loop open, as a pending socket would.
  pending: AtomicUsize,
  /// To the task that runs this service's calls.
  calls: UnboundedSender<Call>,
}

/// Runs every call of one service in this one task. The calls that arrived
/// since it last ran are all polled before it yields, so they all hand their
/// commands to the connection's writer task before that runs, and it writes
/// them in one syscall: with a task per call, tokio ran the writer after each
/// call and wrote every command on its own.
async fn drive(mut incoming: UnboundedReceiver<Call>) {
  let mut running = FuturesUnordered::new();
  loop {
    tokio::select! {
      biased;
      call = incoming.recv() => match call {
        Some(call) => running.push(call),
        None => break,
      },
      Some(()) = running.next(), if !running.is_empty() => {}
    }
  }
  while running.next().await.is_some() {}
}

impl Completions {
  /// `settle_batch(batch)` is the JS function that settles the promises.
  pub fn new(settle_batch: Function<'_, SettledBatch, Unknown<'static>>) -> Result<Arc<Self>> {
    let (calls, incoming) = unbounded_channel();
    napi::bindgen_prelude::spawn(drive(incoming));
    let completions = Arc::new(Completions {
      queue: Mutex::new(Queue::default()),
      notifier: Mutex::new(None),
      pending: AtomicUsize::new(0),
      calls,
    });
    let weak: Weak<Completions> = Arc::downgrade(&completions);
    let notifier = settle_batch
      .build_threadsafe_function::<()>()
      .weak::<true>()
      .callee_handled::<false>()
      .build_callback(move |context: ThreadsafeCallContext<()>| {
        Ok(match weak.upgrade() {
          Some(completions) => completions.take_batch(&context.env),
          None => SettledBatch(Vec::new()),
        })
      })?;
    *completions.notifier.lock().unwrap_or_else(|e| e.into_inner()) = Some(notifier);
    Ok(completions)
  }

  fn notifier(&self) -> std::sync::MutexGuard<'_, Option<Notifier>> {
    self.notifier.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Counts a call that will settle later (JS thread only).
  // `refer`/`unref` are napi_ref/unref_threadsafe_function, i.e. holding the
  // event loop open, which is what is meant here (their deprecation note is
  // about sharing a function, which `clone` does).
  #[allow(deprecated)]
  pub fn begin(&self, env: &Env) -> Result<()> {
    if self.pending.fetch_add(1, Ordering::Relaxed) == 0 {
      if let Some(notifier) = self.notifier().as_mut() {
        notifier.refer(env)?;
      }
    }
    Ok(())
  }

  /// Runs `work` on the runtime and settles call `id` with its outcome.
  pub fn spawn<F>(self: &Arc<Self>, env: &Env, id: u32, work: F) -> Result<()>
  where
    F: Future<Output = LockResult<Payload>> + Send + 'static,
  {
    self.begin(env)?;
    let completions = self.clone();
    let call: Call = Box::pin(async move {
      // One call's panic (a bug) must not take the driver and every other call with it.
      let outcome = AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(LockError::Redis("internal error: the call panicked".into())));
      completions.settle(id, outcome);
    });
    if self.calls.send(call).is_err() {
      // Only when the runtime is gone (the process is exiting).
      self.settle(id, Err(LockError::Closed));
    }
    Ok(())
  }

  /// Queues the outcome of call `id` (any thread).
  pub fn settle(&self, id: u32, outcome: LockResult<Payload>) {
    let notify = {
      let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
      queue.settled.push(Settled { id, outcome });
      !std::mem::replace(&mut queue.scheduled, true)
    };
    if notify {
      if let Some(notifier) = self.notifier().as_ref() {
        notifier.call((), ThreadsafeFunctionCallMode::NonBlocking);
      }
    }
  }

  /// On the JS thread: everything queued so far, releasing the event loop
  /// when no call is left pending.
  #[allow(deprecated)]
  fn take_batch(&self, env: &Env) -> SettledBatch {
    let settled = {
      let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
      queue.scheduled = false;
      std::mem::take(&mut queue.settled)
    };
    let count = settled.len();
    if count > 0 && self.pending.fetch_sub(count, Ordering::Relaxed) == count {
      if let Some(notifier) = self.notifier().as_mut() {
        let _ = notifier.unref(env);
      }
    }
    SettledBatch(settled)
  }
}

impl ToNapiValue for SettledBatch {
  unsafe fn to_napi_value(raw_env: napi::sys::napi_env, batch: Self) -> Result<napi::sys::napi_value> {
    let env = Env::from_raw(raw_env);
    let mut flat = env.create_array(batch.0.len() as u32 * 3)?;
    for (index, Settled { id, outcome }) in batch.0.into_iter().enumerate() {
      let at = index as u32 * 3;
      flat.set(at, id)?;
      match outcome {
        Ok(payload) => {
          flat.set(at + 1, Null)?;
          match payload {
            Payload::Nothing => flat.set(at + 2, ())?,
            Payload::Bool(value) => flat.set(at + 2, value)?,
            Payload::Count(value) => flat.set(at + 2, value)?,
            Payload::Value(convert) => match convert(&env) {
              Ok(value) => flat.set(at + 2, unsafe { Unknown::from_raw_unchecked(raw_env, value) })?,
              // Settle this call with the failure rather than lose the batch.
              Err(failure) => {
                let mut exception = std::ptr::null_mut();
                unsafe { napi::sys::napi_get_and_clear_last_exception(raw_env, &mut exception) };
                let error = LockError::invalid(format!("the result could not be handed to JavaScript: {failure}"));
                flat.set(at + 1, error)?
              }
            },
          }
        }
        Err(error) => flat.set(at + 1, error)?,
      }
    }
    Ok(flat.raw())
  }
}
