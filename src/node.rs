//! Node.js bindings: the native class behind `index.js`, argument conversion
//! and error mapping. Lock rules live in `engine.rs`, not here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::{Env, ValueType};
use napi_derive::napi;

use crate::connection::ConnectionFactory;
use crate::engine::{LockEngine, LockInfo, Owner, Wait};
use crate::error::{LockError, LockResult};
use crate::lease::HeldLease;
use crate::node_calls::{Completions, Payload, SettledBatch};
use crate::node_log;
use crate::options::{
  parse_acquire_args, parse_execute_args, parse_keys, parse_list_args, parse_owner, Input, ServiceOptions,
  ANONYMOUS_OWNER, MAX_KEYS_PER_CALL,
};

/// Nesting deeper than this in options or arguments is rejected, not walked.
const MAX_INPUT_DEPTH: usize = 8;
/// Longer arrays (and objects with more properties) are rejected, not copied.
const MAX_INPUT_ITEMS: usize = MAX_KEYS_PER_CALL;
/// Values visited in one argument at most: a cyclic or huge object (say a
/// request passed as `args`) is rejected instead of freezing the event loop.
const MAX_INPUT_NODES: usize = 4 * MAX_KEYS_PER_CALL;

#[napi_derive::module_init]
fn init() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("ferrolock-worker")
    .enable_all()
    .build()
    .expect("ferrolock: cannot start its tokio runtime");
  create_custom_tokio_runtime(runtime);
  node_log::install();
}

/// Builds a JS `Error` carrying `code` and Medusa's `type`.
fn js_error_object<'env>(env: &'env Env, error: &LockError) -> Result<Object<'env>> {
  let mut object = env.create_error(napi::Error::new(Status::GenericFailure, error.to_string()))?;
  object.set_named_property("code", error.code())?;
  object.set_named_property("type", error.medusa_type())?;
  Ok(object)
}

/// Lets a `LockError` be handed to JS directly, e.g. as a callback argument.
impl ToNapiValue for LockError {
  unsafe fn to_napi_value(raw_env: napi::sys::napi_env, error: Self) -> Result<napi::sys::napi_value> {
    let env = Env::from_raw(raw_env);
    Ok(js_error_object(&env, &error)?.raw())
  }
}

/// The fencing token of each key of a grant, as a JS object in key order.
/// Tokens are microsecond-scale integers, exact as JS numbers until 2^53.
pub struct FencingTokens {
  keys: Vec<String>,
  tokens: Vec<u64>,
}

impl ToNapiValue for FencingTokens {
  unsafe fn to_napi_value(raw_env: napi::sys::napi_env, value: Self) -> Result<napi::sys::napi_value> {
    let env = Env::from_raw(raw_env);
    let mut object = Object::new(&env)?;
    for (key, token) in value.keys.iter().zip(value.tokens) {
      // A JS string key, not a C string: keys may hold NUL bytes.
      object.set_property(env.create_string(key)?, env.create_double(token as f64)?)?;
    }
    Ok(object.raw())
  }
}

/// `listLocks`'s answer: `{ key, ownerId, ttlMs, waiters }` per lock, with
/// `null` for no owner (`*`) and for no expiry.
pub struct LockList(Vec<LockInfo>);

impl ToNapiValue for LockList {
  unsafe fn to_napi_value(raw_env: napi::sys::napi_env, value: Self) -> Result<napi::sys::napi_value> {
    let env = Env::from_raw(raw_env);
    let mut list = env.create_array(value.0.len() as u32)?;
    for (index, lock) in value.0.into_iter().enumerate() {
      let mut object = Object::new(&env)?;
      object.set_named_property("key", lock.key)?;
      object.set_named_property("ownerId", Some(lock.owner).filter(|owner| owner != ANONYMOUS_OWNER))?;
      object.set_named_property("ttlMs", lock.ttl.map(|ttl| ttl.as_millis() as f64))?;
      object.set_named_property("waiters", lock.waiters as f64)?;
      list.set(index as u32, object)?;
    }
    Ok(list.raw())
  }
}

fn js_error(env: &Env, error: &LockError) -> napi::Error {
  match js_error_object(env, error) {
    Ok(object) => napi::Error::from(object.to_unknown()),
    Err(failure) => failure,
  }
}

/// A value converted on the JS thread when its call settles.
fn value<T: ToNapiValue + Send + 'static>(value: T) -> Payload {
  Payload::Value(Box::new(move |env: &Env| unsafe { T::to_napi_value(env.raw(), value) }))
}

/// Converts one argument; a getter or proxy trap that throws (its exception
/// is cleared) and an argument too large to walk become values the parsers
/// reject as `INVALID_ARGUMENT`, naming the parameter.
fn read_input(env: &Env, value: &Unknown) -> Input {
  let mut budget = MAX_INPUT_NODES;
  match walk_input(value, 0, &mut budget) {
    Ok(_) if budget == 0 => Input::Other("value too large to read (a cyclic or huge object)"),
    Ok(input) => input,
    Err(_) => {
      clear_pending_exception(env);
      Input::Other("value that could not be read (a getter or proxy trap threw)")
    }
  }
}

/// Drops the JS exception a failed napi call left pending, so it does not
/// surface as an uncaught error after we reported our own.
fn clear_pending_exception(env: &Env) {
  let mut exception = std::ptr::null_mut();
  unsafe {
    napi::sys::napi_get_and_clear_last_exception(env.raw(), &mut exception);
  }
}

fn walk_input(value: &Unknown, depth: usize, budget: &mut usize) -> Result<Input> {
  if *budget == 0 {
    return Ok(Input::Other("value too large to read"));
  }
  *budget -= 1;
  Ok(match value.get_type()? {
    ValueType::Undefined => Input::Undefined,
    ValueType::Null => Input::Null,
    ValueType::Boolean => Input::Bool(unsafe { value.cast::<bool>() }?),
    ValueType::Number => Input::Number(unsafe { value.cast::<f64>() }?),
    ValueType::String => string_input(value)?,
    ValueType::Object if depth >= MAX_INPUT_DEPTH => Input::Other("deeply nested object"),
    ValueType::Object => {
      let object = unsafe { value.cast::<Object>() }?;
      if object.is_array()? {
        // Checked before allocating: `new Array(2 ** 32 - 1)` is a valid JS value.
        let length = object.get_array_length()? as usize;
        if length > MAX_INPUT_ITEMS {
          return Ok(Input::LongArray(length));
        }
        let mut items = Vec::with_capacity(length);
        for index in 0..length as u32 {
          items.push(walk_input(&object.get_element::<Unknown>(index)?, depth + 1, budget)?);
        }
        Input::Array(items)
      } else if object.is_buffer()? {
        let buffer = unsafe { value.cast::<BufferSlice>() }?;
        Input::Bytes(String::from_utf8_lossy(&buffer).into_owned())
      } else if object.is_typedarray()? || object.is_arraybuffer()? || object.is_dataview()? {
        Input::Other("binary data")
      } else {
        let names = object.get_property_names()?;
        let count = names.get_array_length()? as usize;
        if count > MAX_INPUT_ITEMS {
          return Ok(Input::Other("object with too many properties"));
        }
        let mut fields = Vec::with_capacity(count);
        for index in 0..count as u32 {
          let name: String = names.get_element(index)?;
          let field = object.get_named_property::<Unknown>(&name)?;
          fields.push((name, walk_input(&field, depth + 1, budget)?));
        }
        Input::Object(fields)
      }
    }
    ValueType::Function => Input::Other("function"),
    ValueType::Symbol => Input::Other("symbol"),
    ValueType::BigInt => Input::Other("bigint"),
    _ => Input::Other("unsupported value"),
  })
}

/// A JS string as UTF-8. Node turns lone surrogates into U+FFFD, which would
/// merge distinct keys: such strings are refused instead.
fn string_input(value: &Unknown) -> Result<Input> {
  let text = unsafe { value.cast::<String>() }?;
  if text.contains('\u{FFFD}') {
    let units = unsafe { value.cast::<Utf16String>() }?;
    if String::from_utf16(&units).is_err() {
      return Ok(Input::Other("string with a lone surrogate"));
    }
  }
  Ok(Input::String(text))
}

fn optional_input(env: &Env, value: Option<Unknown>) -> Input {
  match value {
    Some(value) => read_input(env, &value),
    None => Input::Undefined,
  }
}

/// The native lock service; `index.js` wraps it as `LockingModuleService`.
#[napi]
pub struct NativeLockService {
  engine: Arc<LockEngine>,
  calls: Arc<Completions>,
  ignored_options: Vec<String>,
  log_rank: u8,
}

impl Drop for NativeLockService {
  fn drop(&mut self) {
    node_log::unregister(self.engine.id());
  }
}

#[napi]
impl NativeLockService {
  /// Validates `options` (throws `INVALID_ARGUMENT`); connects on first use or
  /// `connect()`. `log(level, message)` receives this service's events at
  /// `logLevel` (`error`, `warn`, `info`, `debug`; default `info`) and above.
  /// Every async method takes a call `id` first and returns nothing: its
  /// outcome reaches `settleBatch([id, error | null, value, …])`.
  #[napi(
    constructor,
    ts_args_type = "options: unknown, settleBatch: (batch: unknown[]) => void, log?: ((level: string, message: string) => void) | null, logLevel?: string | null"
  )]
  pub fn new(
    env: Env,
    options: Unknown,
    settle_batch: Function<SettledBatch, Unknown<'static>>,
    log: Option<Function<FnArgs<(String, String)>, ()>>,
    log_level: Option<String>,
  ) -> Result<Self> {
    let calls = Completions::new(settle_batch)?;
    let input = read_input(&env, &options);
    let build = || -> LockResult<Self> {
      let options = ServiceOptions::parse(&input)?;
      let max_rank = match log_level.as_deref() {
        None => node_log::parse_level("info"),
        Some(name) => node_log::parse_level(name),
      }
      .ok_or_else(|| LockError::invalid("\"logLevel\" must be one of \"error\", \"warn\", \"info\", \"debug\""))?;
      let factory = ConnectionFactory::new(&options.connection)?;
      Ok(NativeLockService {
        engine: Arc::new(LockEngine::new(factory, options.locking)),
        calls,
        ignored_options: options.ignored_options,
        log_rank: max_rank,
      })
    };
    let service = build().map_err(|error| js_error(&env, &error))?;
    if let Some(log) = log {
      let sink = log
        .build_threadsafe_function::<FnArgs<(String, String)>>()
        .weak::<true>()
        .callee_handled::<false>()
        .build()?;
      node_log::register(service.engine.id(), service.log_rank, sink);
    }
    Ok(service)
  }

  /// The prefix of every lock key.
  #[napi(getter)]
  pub fn namespace(&self) -> String {
    self.engine.namespace().to_owned()
  }

  /// Option names accepted but not applied.
  #[napi(getter)]
  pub fn ignored_options(&self) -> Vec<String> {
    self.ignored_options.clone()
  }

  #[napi]
  pub fn connect(&self, env: Env, id: u32) -> Result<()> {
    let engine = self.engine.clone();
    self.calls.spawn(&env, id, async move {
      engine.unless_closed(engine.connection()).await?;
      Ok(Payload::Nothing)
    })
  }

  /// Settles with the fencing token of each key.
  #[napi(ts_args_type = "id: number, keys: string | string[], args?: AcquireArgs | null")]
  pub fn acquire(&self, env: Env, id: u32, keys: Unknown, args: Option<Unknown>) -> Result<()> {
    let keys = parse_keys(&read_input(&env, &keys));
    let args = parse_acquire_args(&optional_input(&env, args));
    let engine = self.engine.clone();
    self.calls.spawn(&env, id, async move {
      let (keys, args) = (keys?, args?);
      let wait = match args.await_queue {
        false => Wait::No,
        true => Wait::Until {
          deadline: tokio::time::Instant::now() + args.timeout.unwrap_or_else(|| engine.wait_timeout()),
        },
      };
      let grant = engine
        .unless_closed(engine.acquire(&keys, Owner::from_id(&args.owner_id), args.lease_ttl, wait))
        .await?;
      Ok(value(FencingTokens {
        keys,
        tokens: grant.fencing_tokens,
      }))
    })
  }

  /// Settles with `true` when every key was released.
  #[napi(ts_args_type = "id: number, keys: string | string[], args?: ReleaseArgs | null")]
  pub fn release(&self, env: Env, id: u32, keys: Unknown, args: Option<Unknown>) -> Result<()> {
    let keys = parse_keys(&read_input(&env, &keys));
    let owner = parse_owner(&optional_input(&env, args));
    let engine = self.engine.clone();
    self.calls.spawn(&env, id, async move {
      let (keys, owner) = (keys?, owner?);
      let released = engine
        .unless_closed(engine.release(&keys, Owner::from_id(&owner)))
        .await?;
      Ok(Payload::Bool(released))
    })
  }

  /// Settles with how many locks were released.
  #[napi(ts_args_type = "id: number, args?: ReleaseArgs | null")]
  pub fn release_all(&self, env: Env, id: u32, args: Option<Unknown>) -> Result<()> {
    let owner = parse_owner(&optional_input(&env, args));
    let engine = self.engine.clone();
    self.calls.spawn(&env, id, async move {
      let owner = owner?;
      let released = engine.unless_closed(engine.release_all(Owner::from_id(&owner))).await?;
      Ok(Payload::Count(released as u32))
    })
  }

  /// Settles with the held locks of the namespace, optionally by owner and key pattern.
  #[napi(ts_args_type = "id: number, args?: ListLocksArgs | null")]
  pub fn list_locks(&self, env: Env, id: u32, args: Option<Unknown>) -> Result<()> {
    let args = parse_list_args(&optional_input(&env, args));
    let engine = self.engine.clone();
    self.calls.spawn(&env, id, async move {
      let args = args?;
      let owner = args.owner_id.as_deref().map(Owner::from_id);
      let locks = engine
        .unless_closed(engine.list_locks(owner, &args.pattern, args.limit))
        .await?;
      Ok(value(LockList(locks)))
    })
  }

  /// Waits for `keys` under a fresh owner and starts renewing their lease;
  /// settles `id` with an `ExecuteLease`. Call `endId` settles once: with
  /// the error that ended the lease early (lost, or the service closed), or
  /// with nothing once the lease is finished or was never granted. Until
  /// then the process stays alive, as the job may only await its signal.
  #[napi(ts_args_type = "id: number, endId: number, keys: string | string[], job: unknown, args?: ExecuteArgs | null")]
  pub fn begin_execute(
    &self,
    env: Env,
    id: u32,
    end_id: u32,
    keys: Unknown,
    job: Unknown,
    args: Option<Unknown>,
  ) -> Result<()> {
    let keys = parse_keys(&read_input(&env, &keys));
    let job_is_function = job.get_type()? == ValueType::Function;
    let args = parse_execute_args(&optional_input(&env, args));
    let engine = self.engine.clone();
    let calls = self.calls.clone();
    calls.begin(&env)?;
    let end = Arc::new(LeaseEnd {
      id: end_id,
      calls: calls.clone(),
      settled: AtomicBool::new(false),
    });
    self.calls.spawn(&env, id, async move {
      let started = async {
        let keys = keys?;
        if !job_is_function {
          return Err(LockError::invalid("\"job\" must be a function"));
        }
        let on_end = end.clone();
        let notify = move |error: LockError| on_end.settle(Err(error));
        engine
          .clone()
          .unless_closed(HeldLease::acquire(engine, keys, args?, notify))
          .await
      };
      match started.await {
        Ok(lease) => Ok(value(ExecuteLease {
          lease: Mutex::new(Some(lease)),
          calls,
          end,
        })),
        Err(error) => {
          end.settle(Ok(Payload::Nothing));
          Err(error)
        }
      }
    })
  }

  /// Stops renewals, aborts running jobs' signals and closes the connection.
  #[napi]
  pub fn close(&self) {
    // The logger stays registered until the service is dropped: lines
    // already on their way to it (e.g. the last release) still arrive.
    self.engine.close();
  }

  /// Counters and wait times since the service was created.
  #[napi(ts_return_type = "NativeStats")]
  pub fn stats(&self) -> NativeStats {
    let stats = self.engine.stats();
    let ms = |duration: std::time::Duration| duration.as_secs_f64() * 1000.0;
    NativeStats {
      acquired: stats.acquired as f64,
      conflicts: stats.conflicts as f64,
      timeouts: stats.timeouts as f64,
      lost_leases: stats.lost_leases as f64,
      renewals: stats.renewals as f64,
      renewal_failures: stats.renewal_failures as f64,
      waits: stats.waits as f64,
      wait_total_ms: ms(stats.wait_total),
      wait_p50_ms: ms(stats.wait_p50),
      wait_p99_ms: ms(stats.wait_p99),
      wait_max_ms: ms(stats.wait_max),
    }
  }
}

/// `stats()`: counts since the service was created; wait times of the
/// acquisitions that may wait (`execute`, `awaitQueue`), granted or timed out.
#[napi(object)]
pub struct NativeStats {
  pub acquired: f64,
  pub conflicts: f64,
  pub timeouts: f64,
  pub lost_leases: f64,
  pub renewals: f64,
  pub renewal_failures: f64,
  pub waits: f64,
  pub wait_total_ms: f64,
  pub wait_p50_ms: f64,
  pub wait_p99_ms: f64,
  pub wait_max_ms: f64,
}

/// The end of one `execute` lease, told to JS exactly once.
struct LeaseEnd {
  id: u32,
  calls: Arc<Completions>,
  settled: AtomicBool,
}

impl LeaseEnd {
  fn settle(&self, outcome: LockResult<Payload>) {
    if !self.settled.swap(true, Ordering::AcqRel) {
      self.calls.settle(self.id, outcome);
    }
  }
}

/// Keys held by one `execute` call.
#[napi]
pub struct ExecuteLease {
  lease: Mutex<Option<HeldLease>>,
  calls: Arc<Completions>,
  end: Arc<LeaseEnd>,
}

/// However the lease object goes (finished, or never handed to JS), its end
/// is told, so the event loop is not held open for it.
impl Drop for ExecuteLease {
  fn drop(&mut self) {
    self.end.settle(Ok(Payload::Nothing));
  }
}

#[napi]
impl ExecuteLease {
  /// The owner id of this `execute` call.
  #[napi(getter)]
  pub fn owner_id(&self) -> Option<String> {
    self.held(|lease| lease.owner().to_owned())
  }

  /// The fencing token of each key.
  #[napi(getter, ts_return_type = "Record<string, number> | undefined")]
  pub fn fencing_tokens(&self) -> Option<FencingTokens> {
    self.held(|lease| FencingTokens {
      keys: lease.keys().to_vec(),
      tokens: lease.fencing_tokens().to_vec(),
    })
  }

  fn held<T>(&self, read: impl FnOnce(&HeldLease) -> T) -> Option<T> {
    self
      .lease
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .as_ref()
      .map(read)
  }

  /// Releases the keys; settles `id` with `LOCK_LOST` (or `CLOSED`) if the lease ended early.
  #[napi]
  pub fn finish(&self, env: Env, id: u32) -> Result<()> {
    let lease = self
      .lease
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .take();
    let end = self.end.clone();
    self.calls.spawn(&env, id, async move {
      let finished = match lease {
        Some(lease) => lease.finish().await,
        None => Ok(()),
      };
      end.settle(Ok(Payload::Nothing));
      finished.map(|_| Payload::Nothing)
    })
  }
}
