//! Parsing and validation of service options and call arguments.
//!
//! Input arrives as [`Input`], a plain mirror of a JS value, so every rule here
//! is testable from Rust and nothing reaches Redis before it passed.

use std::time::Duration;

use crate::error::{LockError, LockResult};

pub const DEFAULT_NAMESPACE: &str = "medusa_lock:";
pub const DEFAULT_WAIT_TIMEOUT_SECS: f64 = 5.0;
pub const DEFAULT_RETRY_INTERVAL_MS: f64 = 5.0;
pub const DEFAULT_MAX_RETRY_INTERVAL_MS: f64 = 200.0;
pub const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
/// Lease of `execute` when no `expire` is given (Medusa's value).
pub const DEFAULT_EXECUTE_EXPIRE_SECS: f64 = 60.0;
pub const DEFAULT_CONNECT_TIMEOUT_MS: f64 = 5_000.0;
pub const DEFAULT_COMMAND_TIMEOUT_MS: f64 = 5_000.0;
pub const DEFAULT_RECONNECT_RETRIES: usize = 6;
pub const DEFAULT_WAIT_FOR_REPLICAS_TIMEOUT_MS: f64 = 1_000.0;
/// Medusa clamps `timeout` and `expire` to at least one second.
const MIN_LOCK_SECS: f64 = 1.0;
/// Longest key accepted, in bytes, namespace excluded; far below Redis's 512 MB
/// limit so a runaway key cannot bloat every script call.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most keys one call may take: every key is a script argument, and one call
/// is one Redis round trip that blocks the server while it runs.
pub const MAX_KEYS_PER_CALL: usize = 10_000;
/// Linux's ceiling for TCP_KEEPIDLE (32767 s); a longer keep-alive delay is capped to it.
const MAX_KEEP_ALIVE_MS: f64 = 32_767_000.0;
/// Upper bound of any duration option, so conversions never overflow (~31 years).
const MAX_SECS: f64 = 1e9;

/// A JS value as handed over by the bindings.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
  Undefined,
  Null,
  Bool(bool),
  Number(f64),
  String(String),
  Array(Vec<Input>),
  Object(Vec<(String, Input)>),
  /// An array longer than the bindings convert (its length only).
  LongArray(usize),
  /// A Buffer or typed array, its bytes read as UTF-8 (TLS certificates).
  Bytes(String),
  /// Functions, symbols, bigints: carried only by their type name.
  Other(&'static str),
}

impl Input {
  fn type_name(&self) -> &'static str {
    match self {
      Input::Undefined => "undefined",
      Input::Null => "null",
      Input::Bool(_) => "boolean",
      Input::Number(_) => "number",
      Input::String(_) => "string",
      Input::Array(_) => "array",
      Input::Object(_) => "object",
      Input::LongArray(_) => "array",
      Input::Bytes(_) => "Buffer",
      Input::Other(name) => name,
    }
  }

  fn is_absent(&self) -> bool {
    matches!(self, Input::Undefined | Input::Null)
  }

  fn field(&self, name: &str) -> &Input {
    match self {
      Input::Object(fields) => fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap_or(&Input::Undefined),
      _ => &Input::Undefined,
    }
  }
}

/// Waiting between acquisition attempts: starts at `initial`, grows by `factor`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
  pub initial: Duration,
  pub max: Duration,
  pub factor: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockingOptions {
  pub namespace: String,
  pub wait_timeout: Duration,
  pub retry_backoff: RetryBackoff,
  /// A grant counts only once this many replicas acknowledged it (Redis `WAIT`).
  pub replica_acks: Option<ReplicaAcks>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaAcks {
  pub replicas: u32,
  pub timeout: Duration,
}

#[derive(Clone, PartialEq, Default)]
pub struct TlsOptions {
  /// PEM root certificate(s) replacing the system trust store.
  pub ca: Option<String>,
  pub cert: Option<String>,
  pub key: Option<String>,
  /// `rejectUnauthorized: false` turns certificate verification off.
  pub reject_unauthorized: bool,
}

impl std::fmt::Debug for TlsOptions {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("TlsOptions")
      .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
      .field("cert", &self.cert.as_ref().map(|_| "<pem>"))
      .field("key", &self.key.as_ref().map(|_| "<redacted>"))
      .field("reject_unauthorized", &self.reject_unauthorized)
      .finish()
  }
}

/// Which Redis deployment to talk to.
#[derive(Clone, PartialEq)]
pub enum Deployment {
  /// One server at `ConnectionOptions::url`.
  Standalone,
  /// A Redis Cluster reached through these seed node URLs.
  Cluster { nodes: Vec<String> },
  /// The master named `master_name`, found through these sentinels.
  Sentinel {
    sentinels: Vec<(String, u16)>,
    master_name: String,
    sentinel_password: Option<String>,
  },
}

impl std::fmt::Debug for Deployment {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      Deployment::Standalone => f.write_str("Standalone"),
      Deployment::Cluster { nodes } => write!(f, "Cluster {{ {} seed nodes }}", nodes.len()),
      Deployment::Sentinel {
        sentinels, master_name, ..
      } => f
        .debug_struct("Sentinel")
        .field("sentinels", sentinels)
        .field("master_name", master_name)
        .finish_non_exhaustive(),
    }
  }
}

#[derive(Clone, PartialEq)]
pub struct ConnectionOptions {
  pub deployment: Deployment,
  /// May carry credentials: never print it. For a cluster, its first seed node.
  pub url: String,
  pub username: Option<String>,
  pub password: Option<String>,
  pub db: Option<i64>,
  pub tls: Option<TlsOptions>,
  pub connect_timeout: Duration,
  pub command_timeout: Duration,
  pub reconnect_retries: usize,
  pub client_name: Option<String>,
  pub keep_alive: Option<Duration>,
}

impl std::fmt::Debug for ConnectionOptions {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("ConnectionOptions")
      .field("deployment", &self.deployment)
      .field("url", &"<redacted>")
      .field("username", &self.username)
      .field("password", &self.password.as_ref().map(|_| "<redacted>"))
      .field("db", &self.db)
      .field("tls", &self.tls)
      .field("connect_timeout", &self.connect_timeout)
      .field("command_timeout", &self.command_timeout)
      .field("reconnect_retries", &self.reconnect_retries)
      .field("client_name", &self.client_name)
      .field("keep_alive", &self.keep_alive)
      .finish()
  }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceOptions {
  pub connection: ConnectionOptions,
  pub locking: LockingOptions,
  /// `redisOptions` keys accepted but not applied, for the caller to report once.
  pub ignored_options: Vec<String>,
}

pub const SERVICE_OPTION_NAMES: &[&str] = &[
  "redisUrl",
  "clusterNodes",
  "redisOptions",
  "namespace",
  "waitLockingTimeout",
  "defaultRetryInterval",
  "maximumRetryInterval",
  "backoffFactor",
  "waitForReplicas",
  "waitForReplicasTimeout",
];

/// ioredis options with a meaning here. `maxRetriesPerRequest` and
/// `enableOfflineQueue` are accepted for config compatibility: every command
/// is bounded by `commandTimeout` and reconnects are retried instead. As in
/// ioredis, `name` is the Sentinel master name and `connectionName` the
/// `CLIENT SETNAME` of the connection.
pub const REDIS_OPTION_NAMES: &[&str] = &[
  "username",
  "password",
  "db",
  "tls",
  "connectTimeout",
  "commandTimeout",
  "maxRetriesPerRequest",
  "enableOfflineQueue",
  "keepAlive",
  "name",
  "connectionName",
  "sentinels",
  "sentinelPassword",
];

impl ServiceOptions {
  pub fn parse(input: &Input) -> LockResult<Self> {
    let Input::Object(fields) = input else {
      return Err(LockError::invalid(format!(
        "options must be an object with at least \"redisUrl\", got {}",
        input.type_name()
      )));
    };
    let mut ignored_options = Vec::new();
    for (name, _) in fields {
      if !SERVICE_OPTION_NAMES.contains(&name.as_str()) {
        ignored_options.push(name.clone());
      }
    }

    let cluster_nodes = parse_cluster_nodes(input.field("clusterNodes"))?;
    let url = match input.field("redisUrl") {
      Input::String(url) if !url.is_empty() => url.clone(),
      absent if absent.is_absent() && !cluster_nodes.is_empty() => cluster_nodes[0].clone(),
      absent if absent.is_absent() => {
        return Err(LockError::invalid(
          "No \"redisUrl\" provided in the ferrolock options. It is required to connect to Redis (or give \"clusterNodes\").",
        ))
      }
      other => {
        return Err(LockError::invalid(format!(
          "\"redisUrl\" must be a non-empty string, got {}",
          other.type_name()
        )))
      }
    };
    check_url(&url, "redisUrl")?;

    let namespace = match input.field("namespace") {
      absent if absent.is_absent() => DEFAULT_NAMESPACE.to_owned(),
      Input::String(namespace) => namespace.clone(),
      other => {
        return Err(LockError::invalid(format!(
          "\"namespace\" must be a string, got {}",
          other.type_name()
        )))
      }
    };

    let wait_timeout_secs = option_number(input, "waitLockingTimeout", 0.0)?
      .unwrap_or(DEFAULT_WAIT_TIMEOUT_SECS)
      .max(MIN_LOCK_SECS);
    let initial_ms = option_number(input, "defaultRetryInterval", 0.0)?
      .unwrap_or(DEFAULT_RETRY_INTERVAL_MS)
      .max(1.0);
    let max_ms = option_number(input, "maximumRetryInterval", 0.0)?
      .unwrap_or(DEFAULT_MAX_RETRY_INTERVAL_MS)
      .max(initial_ms);
    let factor = option_number(input, "backoffFactor", 1.0)?.unwrap_or(DEFAULT_BACKOFF_FACTOR);
    let replica_acks = match option_number(input, "waitForReplicas", 0.0)? {
      Some(replicas) if replicas.fract() != 0.0 => {
        return Err(LockError::invalid(
          "\"waitForReplicas\" must be a whole number of replicas",
        ))
      }
      Some(replicas) if replicas >= 1.0 => Some(ReplicaAcks {
        replicas: replicas.min(1000.0) as u32,
        timeout: millis(
          option_number(input, "waitForReplicasTimeout", 1.0)?.unwrap_or(DEFAULT_WAIT_FOR_REPLICAS_TIMEOUT_MS),
        ),
      }),
      _ => None,
    };

    let (mut connection, mut ignored_redis) = parse_redis_options(url, input.field("redisOptions"))?;
    if !cluster_nodes.is_empty() {
      if !matches!(connection.deployment, Deployment::Standalone) {
        return Err(LockError::invalid(
          "\"clusterNodes\" and \"redisOptions.sentinels\" cannot be used together",
        ));
      }
      connection.deployment = Deployment::Cluster { nodes: cluster_nodes };
    }
    ignored_options.append(&mut ignored_redis);

    Ok(ServiceOptions {
      connection,
      locking: LockingOptions {
        namespace,
        wait_timeout: secs(wait_timeout_secs),
        retry_backoff: RetryBackoff {
          initial: millis(initial_ms),
          max: millis(max_ms),
          factor,
        },
        replica_acks,
      },
      ignored_options,
    })
  }
}

/// Checks the scheme only; the message never echoes the URL, which may hold a password.
fn check_url(url: &str, name: &str) -> LockResult<()> {
  let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
  if !scheme_ok || redis::parse_redis_url(url).is_none() {
    return Err(LockError::invalid(format!(
      "\"{name}\" is not a valid Redis URL: expected redis://[[user]:password@]host[:port][/db] or rediss://… for TLS"
    )));
  }
  Ok(())
}

fn parse_cluster_nodes(input: &Input) -> LockResult<Vec<String>> {
  const EXPECTED: &str = "\"clusterNodes\" must be a non-empty array of redis:// or rediss:// URLs";
  match input {
    absent if absent.is_absent() => Ok(Vec::new()),
    Input::Array(items) if !items.is_empty() => items
      .iter()
      .map(|item| match item {
        Input::String(url) => check_url(url, "clusterNodes").map(|_| url.clone()),
        other => Err(LockError::invalid(format!(
          "{EXPECTED}, got an item of type {}",
          other.type_name()
        ))),
      })
      .collect(),
    other => Err(LockError::invalid(format!("{EXPECTED}, got {}", describe(other)))),
  }
}

fn parse_sentinels(input: &Input) -> LockResult<Vec<(String, u16)>> {
  const EXPECTED: &str = "\"redisOptions.sentinels\" must be a non-empty array of { host, port }";
  let Input::Array(items) = input else {
    return Err(LockError::invalid(format!("{EXPECTED}, got {}", input.type_name())));
  };
  if items.is_empty() {
    return Err(LockError::invalid(format!("{EXPECTED}, got []")));
  }
  items
    .iter()
    .map(|item| {
      let host = match item.field("host") {
        Input::String(host) if !host.is_empty() => host.clone(),
        absent if absent.is_absent() => "localhost".to_owned(),
        _ => return Err(LockError::invalid(format!("{EXPECTED}: \"host\" must be a string"))),
      };
      let port = match item.field("port") {
        Input::Number(port) if port.fract() == 0.0 && *port >= 1.0 && *port <= 65535.0 => *port as u16,
        absent if absent.is_absent() => 26379,
        _ => {
          return Err(LockError::invalid(format!(
            "{EXPECTED}: \"port\" must be a port number"
          )))
        }
      };
      Ok((host, port))
    })
    .collect()
}

fn parse_redis_options(url: String, input: &Input) -> LockResult<(ConnectionOptions, Vec<String>)> {
  let mut options = ConnectionOptions {
    deployment: Deployment::Standalone,
    url,
    username: None,
    password: None,
    db: None,
    tls: None,
    connect_timeout: millis(DEFAULT_CONNECT_TIMEOUT_MS),
    command_timeout: millis(DEFAULT_COMMAND_TIMEOUT_MS),
    reconnect_retries: DEFAULT_RECONNECT_RETRIES,
    client_name: None,
    keep_alive: None,
  };
  let fields = match input {
    absent if absent.is_absent() => return Ok((options, Vec::new())),
    Input::Object(fields) => fields,
    other => {
      return Err(LockError::invalid(format!(
        "\"redisOptions\" must be an object, got {}",
        other.type_name()
      )))
    }
  };
  let mut ignored: Vec<String> = fields
    .iter()
    .filter(|(name, _)| !REDIS_OPTION_NAMES.contains(&name.as_str()))
    .map(|(name, _)| format!("redisOptions.{name}"))
    .collect();

  options.username = redis_string(input, "username")?;
  options.password = redis_string(input, "password")?;
  options.client_name = redis_string(input, "connectionName")?;
  let master_name = redis_string(input, "name")?;
  match input.field("sentinels") {
    // Without sentinels, ioredis ignores `name` too.
    absent if absent.is_absent() => {
      if master_name.is_some() {
        ignored.push("redisOptions.name".to_owned());
      }
    }
    sentinels => {
      options.deployment = Deployment::Sentinel {
        sentinels: parse_sentinels(sentinels)?,
        master_name: master_name.ok_or_else(|| {
          LockError::invalid(
            "\"redisOptions.name\" (the Sentinel master name) is required with \"redisOptions.sentinels\"",
          )
        })?,
        sentinel_password: redis_string(input, "sentinelPassword")?,
      };
    }
  }
  if let Some(db) = redis_number(input, "db")? {
    if db.fract() != 0.0 {
      return Err(LockError::invalid("\"redisOptions.db\" must be a whole number"));
    }
    options.db = Some(db as i64);
  }
  if let Some(ms) = redis_number(input, "connectTimeout")? {
    options.connect_timeout = millis(ms.max(1.0));
  }
  if let Some(ms) = redis_number(input, "commandTimeout")? {
    options.command_timeout = millis(ms.max(1.0));
  }
  if let Some(retries) = redis_number(input, "maxRetriesPerRequest")? {
    options.reconnect_retries = retries.min(100.0) as usize;
  }
  match input.field("enableOfflineQueue") {
    Input::Bool(_) => {}
    absent if absent.is_absent() => {}
    other => {
      return Err(LockError::invalid(format!(
        "\"redisOptions.enableOfflineQueue\" must be a boolean, got {}",
        other.type_name()
      )))
    }
  }
  options.keep_alive = match input.field("keepAlive") {
    Input::Number(ms) if ms.is_finite() && *ms > 0.0 => Some(millis(ms.min(MAX_KEEP_ALIVE_MS))),
    Input::Number(ms) if *ms == 0.0 => None,
    Input::Bool(true) => Some(Duration::ZERO),
    Input::Bool(false) => None,
    absent if absent.is_absent() => None,
    other => {
      return Err(LockError::invalid(format!(
        "\"redisOptions.keepAlive\" must be a number of milliseconds (0 = off), got {}",
        describe(other)
      )))
    }
  };
  options.tls = parse_tls(input.field("tls"))?;
  Ok((options, ignored))
}

fn parse_tls(input: &Input) -> LockResult<Option<TlsOptions>> {
  match input {
    absent if absent.is_absent() => Ok(None),
    Input::Bool(false) => Ok(None),
    Input::Bool(true) => Ok(Some(TlsOptions {
      reject_unauthorized: true,
      ..TlsOptions::default()
    })),
    Input::Object(_) => {
      let pem = |name: &str| match input.field(name) {
        Input::String(pem) | Input::Bytes(pem) => Ok(Some(pem.clone())),
        absent if absent.is_absent() => Ok(None),
        other => Err(LockError::invalid(format!(
          "\"redisOptions.tls.{name}\" must be a PEM string or Buffer, got {}",
          other.type_name()
        ))),
      };
      let reject_unauthorized = match input.field("rejectUnauthorized") {
        Input::Bool(value) => *value,
        absent if absent.is_absent() => true,
        other => {
          return Err(LockError::invalid(format!(
            "\"redisOptions.tls.rejectUnauthorized\" must be a boolean, got {}",
            other.type_name()
          )))
        }
      };
      Ok(Some(TlsOptions {
        ca: pem("ca")?,
        cert: pem("cert")?,
        key: pem("key")?,
        reject_unauthorized,
      }))
    }
    other => Err(LockError::invalid(format!(
      "\"redisOptions.tls\" must be an object or a boolean, got {}",
      other.type_name()
    ))),
  }
}

fn redis_string(input: &Input, name: &str) -> LockResult<Option<String>> {
  match input.field(name) {
    Input::String(value) => Ok(Some(value.clone())),
    absent if absent.is_absent() => Ok(None),
    other => Err(LockError::invalid(format!(
      "\"redisOptions.{name}\" must be a string, got {}",
      other.type_name()
    ))),
  }
}

fn redis_number(input: &Input, name: &str) -> LockResult<Option<f64>> {
  match input.field(name) {
    Input::Number(value) if value.is_finite() && *value >= 0.0 => Ok(Some(value.min(MAX_SECS))),
    absent if absent.is_absent() => Ok(None),
    other => Err(LockError::invalid(format!(
      "\"redisOptions.{name}\" must be a finite number >= 0, got {}",
      describe(other)
    ))),
  }
}

/// A numeric top-level option. Numeric strings are accepted because Medusa
/// coerces these options with `+value`, so configs often pass env vars as-is.
fn option_number(input: &Input, name: &str, min: f64) -> LockResult<Option<f64>> {
  let value = match input.field(name) {
    absent if absent.is_absent() => return Ok(None),
    Input::Number(value) => *value,
    Input::String(text) if text.trim().parse::<f64>().is_ok() => text.trim().parse::<f64>().unwrap_or(f64::NAN),
    other => {
      return Err(LockError::invalid(format!(
        "\"{name}\" must be a number, got {}",
        describe(other)
      )))
    }
  };
  if !value.is_finite() || value < min {
    return Err(LockError::invalid(format!(
      "\"{name}\" must be a finite number >= {min}, got {value}"
    )));
  }
  Ok(Some(value.min(MAX_SECS)))
}

fn describe(input: &Input) -> String {
  match input {
    Input::Number(value) => value.to_string(),
    other => other.type_name().to_owned(),
  }
}

fn secs(value: f64) -> Duration {
  Duration::from_secs_f64(value)
}

fn millis(value: f64) -> Duration {
  Duration::from_secs_f64(value / 1000.0)
}

/// The keys of one call, deduplicated, in the caller's order and spelling.
pub fn parse_keys(input: &Input) -> LockResult<Vec<String>> {
  const EXPECTED: &str = "\"keys\" must be a non-empty string or a non-empty array of non-empty strings";
  let check = |key: &Input| match key {
    Input::String(key) if key.is_empty() => Err(LockError::invalid(format!("{EXPECTED}, got an empty string"))),
    Input::String(key) if key.len() > MAX_KEY_BYTES => Err(LockError::invalid(format!(
      "\"keys\": a key is {} bytes long, the maximum is {MAX_KEY_BYTES}",
      key.len()
    ))),
    Input::String(key) => Ok(key.clone()),
    other => Err(LockError::invalid(format!("{EXPECTED}, got {}", other.type_name()))),
  };
  match input {
    Input::Array(items) if items.is_empty() => Err(LockError::invalid(format!("{EXPECTED}, got []"))),
    Input::Array(items) if items.len() > MAX_KEYS_PER_CALL => Err(too_many_keys(items.len())),
    Input::LongArray(length) => Err(too_many_keys(*length)),
    Input::Array(items) => {
      let mut seen = std::collections::HashSet::with_capacity(items.len());
      let mut keys: Vec<String> = Vec::with_capacity(items.len());
      for item in items {
        let key = check(item)?;
        if seen.insert(key.clone()) {
          keys.push(key);
        }
      }
      Ok(keys)
    }
    single => Ok(vec![check(single)?]),
  }
}

fn too_many_keys(count: usize) -> LockError {
  LockError::invalid(format!(
    "\"keys\": at most {MAX_KEYS_PER_CALL} keys per call, got {count}"
  ))
}

/// Most locks one `listLocks` call returns.
pub const MAX_LIST_LIMIT: usize = 100_000;
pub const DEFAULT_LIST_LIMIT: usize = 1_000;

/// What `listLocks` is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ListArgs {
  /// Only locks of this owner (`*`: those taken without owner).
  pub owner_id: Option<String>,
  /// A Redis glob on the key, namespace excluded.
  pub pattern: String,
  pub limit: usize,
}

pub fn parse_list_args(input: &Input) -> LockResult<ListArgs> {
  check_args_object(input, "listLocks options")?;
  let owner_id = match input.field("ownerId") {
    absent if absent.is_absent() => None,
    _ => Some(parse_owner(input)?),
  };
  let pattern = match input.field("pattern") {
    absent if absent.is_absent() => "*".to_owned(),
    Input::String(pattern) if !pattern.is_empty() && pattern.len() <= MAX_KEY_BYTES => pattern.clone(),
    other => {
      return Err(LockError::invalid(format!(
        "\"pattern\" must be a non-empty glob of at most {MAX_KEY_BYTES} bytes, got {}",
        describe(other)
      )))
    }
  };
  let limit = match input.field("limit") {
    absent if absent.is_absent() => DEFAULT_LIST_LIMIT,
    Input::Number(limit) if limit.fract() == 0.0 && *limit >= 1.0 && *limit <= MAX_LIST_LIMIT as f64 => *limit as usize,
    other => {
      return Err(LockError::invalid(format!(
        "\"limit\" must be a whole number from 1 to {MAX_LIST_LIMIT}, got {}",
        describe(other)
      )))
    }
  };
  Ok(ListArgs {
    owner_id,
    pattern,
    limit,
  })
}

/// The owner a lock is taken or released for; `*` when none is given (Medusa's marker).
pub const ANONYMOUS_OWNER: &str = "*";

#[derive(Debug, Clone, PartialEq)]
pub struct AcquireArgs {
  pub owner_id: String,
  /// `None`: the lock does not expire.
  pub lease_ttl: Option<Duration>,
  pub await_queue: bool,
  /// How long `awaitQueue` waits; `None` = the service's `waitLockingTimeout`.
  pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteArgs {
  pub timeout: Option<Duration>,
  pub lease_ttl: Duration,
}

fn check_args_object(input: &Input, parameter: &str) -> LockResult<()> {
  match input {
    Input::Object(_) => Ok(()),
    absent if absent.is_absent() => Ok(()),
    other => Err(LockError::invalid(format!(
      "\"{parameter}\" must be an object, got {}",
      other.type_name()
    ))),
  }
}

pub fn parse_owner(args: &Input) -> LockResult<String> {
  check_args_object(args, "args")?;
  match args.field("ownerId") {
    absent if absent.is_absent() => Ok(ANONYMOUS_OWNER.to_owned()),
    Input::String(owner) if !owner.is_empty() => Ok(owner.clone()),
    other => Err(LockError::invalid(format!(
      "\"ownerId\" must be a non-empty string, got {}",
      match other {
        Input::String(_) => "an empty string",
        other => other.type_name(),
      }
    ))),
  }
}

/// A `timeout` or `expire` in seconds: a finite number >= 0 (`0` keeps Medusa's meaning).
fn call_seconds(args: &Input, name: &str) -> LockResult<Option<f64>> {
  match args.field(name) {
    absent if absent.is_absent() => Ok(None),
    Input::Number(value) if value.is_finite() && *value >= 0.0 => Ok(Some(value.min(MAX_SECS))),
    other => Err(LockError::invalid(format!(
      "\"{name}\" must be a finite number of seconds >= 0, got {}",
      describe(other)
    ))),
  }
}

pub fn parse_acquire_args(args: &Input) -> LockResult<AcquireArgs> {
  let owner_id = parse_owner(args)?;
  // As in Medusa, `expire: 0` (or none) means the lock never expires.
  let lease_ttl = call_seconds(args, "expire")?
    .filter(|secs| *secs > 0.0)
    .map(|value| secs(value.max(MIN_LOCK_SECS)));
  let await_queue = match args.field("awaitQueue") {
    Input::Bool(value) => *value,
    absent if absent.is_absent() => false,
    other => {
      return Err(LockError::invalid(format!(
        "\"awaitQueue\" must be a boolean, got {}",
        other.type_name()
      )))
    }
  };
  let timeout = call_seconds(args, "timeout")?.map(|value| secs(value.max(MIN_LOCK_SECS)));
  Ok(AcquireArgs {
    owner_id,
    lease_ttl,
    await_queue,
    timeout,
  })
}

pub fn parse_execute_args(args: &Input) -> LockResult<ExecuteArgs> {
  check_args_object(args, "args")?;
  let timeout = call_seconds(args, "timeout")?.map(|value| secs(value.max(MIN_LOCK_SECS)));
  let lease_ttl = secs(
    call_seconds(args, "expire")?
      .unwrap_or(DEFAULT_EXECUTE_EXPIRE_SECS)
      .max(MIN_LOCK_SECS),
  );
  Ok(ExecuteArgs { timeout, lease_ttl })
}

#[cfg(test)]
mod tests {
  use super::*;

  fn object(fields: &[(&str, Input)]) -> Input {
    Input::Object(fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
  }

  fn url() -> (&'static str, Input) {
    ("redisUrl", Input::String("redis://u:secret@localhost:6379/2".into()))
  }

  #[test]
  fn defaults_are_the_documented_values() {
    let options = ServiceOptions::parse(&object(&[url()])).unwrap();
    assert_eq!(options.locking.namespace, "medusa_lock:");
    assert_eq!(options.locking.wait_timeout, Duration::from_secs(5));
    assert_eq!(options.locking.retry_backoff.initial, Duration::from_millis(5));
    assert_eq!(options.locking.retry_backoff.max, Duration::from_millis(200));
    assert_eq!(options.locking.retry_backoff.factor, 2.0);
    assert!(options.ignored_options.is_empty());
  }

  #[test]
  fn missing_or_malformed_url_is_rejected_without_echo() {
    let error = ServiceOptions::parse(&object(&[])).unwrap_err();
    assert!(error.to_string().contains("redisUrl"));
    let error =
      ServiceOptions::parse(&object(&[("redisUrl", Input::String("http://u:hunter2@x".into()))])).unwrap_err();
    assert_eq!(error.code(), "INVALID_ARGUMENT");
    assert!(!error.to_string().contains("hunter2"));
  }

  #[test]
  fn numeric_options_are_checked_and_named() {
    for bad in [
      Input::Number(f64::NAN),
      Input::Number(-1.0),
      Input::String("soon".into()),
      Input::Bool(true),
    ] {
      let error = ServiceOptions::parse(&object(&[url(), ("waitLockingTimeout", bad)])).unwrap_err();
      assert!(error.to_string().contains("waitLockingTimeout"), "{error}");
    }
    let options = ServiceOptions::parse(&object(&[url(), ("waitLockingTimeout", Input::String("10".into()))])).unwrap();
    assert_eq!(options.locking.wait_timeout, Duration::from_secs(10));
  }

  #[test]
  fn unknown_redis_options_are_reported() {
    let redis_options = object(&[("lazyConnect", Input::Bool(true)), ("db", Input::Number(3.0))]);
    let options = ServiceOptions::parse(&object(&[url(), ("redisOptions", redis_options)])).unwrap();
    assert_eq!(options.ignored_options, vec!["redisOptions.lazyConnect".to_string()]);
    assert_eq!(options.connection.db, Some(3));
  }

  #[test]
  fn debug_output_hides_secrets() {
    let redis_options = object(&[("password", Input::String("hunter2".into()))]);
    let options = ServiceOptions::parse(&object(&[url(), ("redisOptions", redis_options)])).unwrap();
    let printed = format!("{options:?}");
    assert!(!printed.contains("secret") && !printed.contains("hunter2"), "{printed}");
  }

  #[test]
  fn keys_are_validated_and_deduplicated() {
    assert_eq!(parse_keys(&Input::String("a".into())).unwrap(), vec!["a"]);
    let keys = Input::Array(vec![
      Input::String("a".into()),
      Input::String("b".into()),
      Input::String("a".into()),
    ]);
    assert_eq!(parse_keys(&keys).unwrap(), vec!["a", "b"]);
    for bad in [
      Input::Array(vec![]),
      Input::String(String::new()),
      Input::Number(1.0),
      Input::Array(vec![Input::String("a".into()), Input::Null]),
      Input::String("k".repeat(MAX_KEY_BYTES + 1)),
    ] {
      let error = parse_keys(&bad).unwrap_err();
      assert_eq!(error.code(), "INVALID_ARGUMENT");
      assert!(error.to_string().contains("keys"), "{error}");
    }
  }

  #[test]
  fn call_arguments_follow_medusa_units() {
    let args = parse_acquire_args(&object(&[
      ("expire", Input::Number(0.2)),
      ("ownerId", Input::String("o".into())),
    ]))
    .unwrap();
    assert_eq!(args.lease_ttl, Some(Duration::from_secs(1)));
    assert_eq!(args.owner_id, "o");
    assert_eq!(parse_acquire_args(&Input::Undefined).unwrap().owner_id, "*");
    assert_eq!(
      parse_acquire_args(&object(&[("expire", Input::Number(0.0))]))
        .unwrap()
        .lease_ttl,
      None
    );
    assert_eq!(
      parse_execute_args(&Input::Undefined).unwrap().lease_ttl,
      Duration::from_secs(60)
    );
    for (name, bad) in [
      ("expire", Input::Number(-1.0)),
      ("timeout", Input::Number(f64::NAN)),
      ("expire", Input::String("5".into())),
    ] {
      let error = parse_execute_args(&object(&[(name, bad)])).unwrap_err();
      assert!(error.to_string().contains(name), "{error}");
    }
    assert!(parse_acquire_args(&object(&[("awaitQueue", Input::Number(1.0))])).is_err());
  }
}
