//! Building and owning Redis connections: one server, a Redis Cluster, or a
//! master found through Sentinel. The engine only sees [`RedisConnection`],
//! which behaves the same in all three.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
  AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, ProtocolVersion,
  PushInfo, PushKind, RedisFuture, TlsCertificates, TlsMode, Value,
};

use crate::error::{LockError, LockResult};
use crate::options::{ConnectionOptions, Deployment, TlsOptions};

/// Where commands go.
#[derive(Clone)]
enum Target {
  /// One server, or whichever master Sentinel names: see [`NodeConnection`].
  Node(NodeSource),
  /// Follows MOVED/ASK redirections and topology changes; `seeds` serve the
  /// wake-up subscription (PUBLISH reaches every node of a cluster).
  Cluster {
    client: Box<ClusterClient>,
    seeds: Vec<Client>,
  },
}

/// How the one node of a non-cluster deployment is found.
#[derive(Clone)]
enum NodeSource {
  Direct(Box<Client>),
  /// Asks the sentinels for the current master whenever a connection must be (re)made.
  Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl NodeSource {
  async fn client(&self) -> redis::RedisResult<Client> {
    match self {
      NodeSource::Direct(client) => Ok((**client).clone()),
      NodeSource::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
    }
  }
}

/// RESP3 (Redis 6+) for single-node connections: only there does the
/// driver report a closed socket (see [`NodeConnection`]). Lua replies and
/// pub/sub read the same either way; `HELLO` needs no ACL permission.
const NODE_PROTOCOL: ProtocolVersion = ProtocolVersion::RESP3;

/// Everything needed to open connections, checked before any I/O.
#[derive(Clone)]
pub struct ConnectionFactory {
  target: Target,
  /// Timeouts of every single-node connection (`AsyncConnectionConfig` has no push sender yet).
  node_config: AsyncConnectionConfig,
  connect_timeout: Duration,
  client_name: Option<String>,
}

impl std::fmt::Debug for ConnectionFactory {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let deployment = match &self.target {
      Target::Node(NodeSource::Direct(client)) => match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        other => format!("{other:?}"),
      },
      Target::Node(NodeSource::Sentinel(_)) => "sentinel".to_owned(),
      Target::Cluster { seeds, .. } => format!("cluster of {} seed nodes", seeds.len()),
    };
    f.debug_struct("ConnectionFactory")
      .field("deployment", &deployment)
      .field("connect_timeout", &self.connect_timeout)
      .finish_non_exhaustive()
  }
}

fn invalid_url(name: &str) -> LockError {
  LockError::invalid(format!(
    "\"{name}\" is not a valid Redis URL (it is not shown here, as it may hold a password)"
  ))
}

fn tls_error(error: redis::RedisError) -> LockError {
  LockError::invalid(format!("\"redisOptions.tls\" could not be used: {error}"))
}

/// The URL's connection info with `redisOptions` credentials, db and keep-alive applied.
fn connection_info(url: &str, name: &str, options: &ConnectionOptions) -> LockResult<ConnectionInfo> {
  let mut info = url.into_connection_info().map_err(|_| invalid_url(name))?;
  let mut redis_settings = info.redis_settings().clone();
  if let Some(username) = &options.username {
    redis_settings = redis_settings.set_username(username);
  }
  if let Some(password) = &options.password {
    redis_settings = redis_settings.set_password(password);
  }
  if let Some(db) = options.db {
    redis_settings = redis_settings.set_db(db);
  }
  info = info.set_redis_settings(redis_settings);
  // TCP_NODELAY, as ioredis sets by default: with Nagle's algorithm a command
  // written while an earlier one is unacknowledged waits for that ACK.
  let mut tcp = info.tcp_settings().clone().set_nodelay(true);
  if let Some(keep_alive) = options.keep_alive {
    let mut keepalive = socket2::TcpKeepalive::new();
    if !keep_alive.is_zero() {
      keepalive = keepalive.with_time(keep_alive);
    }
    tcp = tcp.set_keepalive(keepalive);
  }
  info = info.set_tcp_settings(tcp);
  if let Some(tls) = &options.tls {
    // ioredis semantics: a `tls` option turns TLS on even for a redis:// URL.
    let addr = match info.addr().clone() {
      ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => ConnectionAddr::TcpTls {
        host,
        port,
        insecure: !tls.reject_unauthorized,
        tls_params: None,
      },
      other => other,
    };
    info = info.set_addr(addr);
  }
  Ok(info)
}

fn certificates(tls: &TlsOptions) -> LockResult<TlsCertificates> {
  let client_tls = match (&tls.cert, &tls.key) {
    (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
      client_cert: cert.clone().into_bytes(),
      client_key: key.clone().into_bytes(),
    }),
    (None, None) => None,
    _ => {
      return Err(LockError::invalid(
        "\"redisOptions.tls\": \"cert\" and \"key\" must be given together",
      ))
    }
  };
  Ok(TlsCertificates {
    client_tls,
    root_cert: tls.ca.clone().map(String::into_bytes),
  })
}

/// rustls needs a process-wide crypto provider before the first TLS
/// connection; without one it panics. Installing is idempotent.
fn install_tls_provider() {
  let _ = rustls::crypto::ring::default_provider().install_default();
}

fn open_client(info: ConnectionInfo, tls: Option<&TlsOptions>) -> LockResult<Client> {
  let uses_tls = tls.is_some() || matches!(info.addr(), ConnectionAddr::TcpTls { .. });
  if uses_tls {
    install_tls_provider();
  }
  match tls {
    None => Client::open(info).map_err(tls_error),
    Some(tls) => Client::build_with_tls(info, certificates(tls)?).map_err(tls_error),
  }
}

fn tls_mode(tls: &TlsOptions) -> TlsMode {
  if tls.reject_unauthorized {
    TlsMode::Secure
  } else {
    TlsMode::Insecure
  }
}

impl ConnectionFactory {
  pub fn new(options: &ConnectionOptions) -> LockResult<Self> {
    let target = match &options.deployment {
      Deployment::Standalone => {
        let mut info = connection_info(&options.url, "redisUrl", options)?;
        let settings = info.redis_settings().clone().set_protocol(NODE_PROTOCOL);
        info = info.set_redis_settings(settings);
        Target::Node(NodeSource::Direct(Box::new(open_client(info, options.tls.as_ref())?)))
      }
      Deployment::Cluster { nodes } => {
        let infos = nodes
          .iter()
          .map(|node| connection_info(node, "clusterNodes", options))
          .collect::<LockResult<Vec<_>>>()?;
        let seeds = infos
          .iter()
          .map(|info| open_client(info.clone(), options.tls.as_ref()))
          .collect::<LockResult<Vec<_>>>()?;
        let first = infos[0].redis_settings();
        let mut builder = ClusterClientBuilder::new(infos.clone())
          .connection_timeout(options.connect_timeout)
          .response_timeout(options.command_timeout)
          .retries(options.reconnect_retries as u32);
        if let Some(username) = first.username() {
          builder = builder.username(username);
        }
        if let Some(password) = first.password() {
          builder = builder.password(password);
        }
        if let Some(tls) = &options.tls {
          builder = builder.tls(tls_mode(tls)).certs(certificates(tls)?);
        }
        Target::Cluster {
          client: Box::new(builder.build().map_err(tls_error)?),
          seeds,
        }
      }
      Deployment::Sentinel {
        sentinels,
        master_name,
        sentinel_password,
      } => {
        let info = connection_info(&options.url, "redisUrl", options)?;
        let addresses = sentinels
          .iter()
          .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder = SentinelClientBuilder::new(addresses, master_name, SentinelServerType::Master)
          .map_err(|error| LockError::invalid(format!("\"redisOptions.sentinels\": {error}")))?
          .set_client_to_redis_db(info.redis_settings().db())
          .set_client_to_redis_protocol(NODE_PROTOCOL);
        if let Some(username) = info.redis_settings().username() {
          builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = info.redis_settings().password() {
          builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = sentinel_password {
          builder = builder.set_client_to_sentinel_password(password);
        }
        if let Some(tls) = &options.tls {
          install_tls_provider();
          builder = builder
            .set_client_to_redis_tls_mode(tls_mode(tls))
            .set_client_to_redis_certificates(certificates(tls)?);
        }
        Target::Node(NodeSource::Sentinel(Arc::new(tokio::sync::Mutex::new(
          builder.build().map_err(tls_error)?,
        ))))
      }
    };
    Ok(ConnectionFactory {
      target,
      node_config: AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.command_timeout)),
      connect_timeout: options.connect_timeout,
      client_name: options.client_name.clone(),
    })
  }

  pub fn is_cluster(&self) -> bool {
    matches!(self.target, Target::Cluster { .. })
  }

  fn connect_timed_out(&self, what: &str) -> LockError {
    LockError::Redis(format!(
      "could not {what} within the connect timeout ({} ms)",
      self.connect_timeout.as_millis()
    ))
  }

  /// Opens the connection and checks that Redis answers (and accepts our
  /// credentials); fails within the connect timeout when it does not.
  pub async fn connect(&self) -> LockResult<RedisConnection> {
    let connecting = async {
      let mut connection = match &self.target {
        Target::Node(source) => {
          let node = NodeConnection {
            shared: Arc::new(NodeShared {
              source: source.clone(),
              config: self.node_config.clone(),
              connect_timeout: self.connect_timeout,
              client_name: self.client_name.clone(),
              current: RwLock::new(None),
              generation: AtomicU64::new(0),
              attempts_done: AtomicU64::new(0),
              opening: tokio::sync::Mutex::new(None),
            }),
          };
          node.current().await?;
          RedisConnection::Node(node)
        }
        Target::Cluster { client, .. } => RedisConnection::Cluster(client.get_async_connection().await?),
      };
      redis::cmd("PING").exec_async(&mut connection).await?;
      Ok::<_, LockError>(connection)
    };
    tokio::time::timeout(self.connect_timeout, connecting)
      .await
      .map_err(|_| self.connect_timed_out("connect to Redis"))?
  }

  /// A dedicated connection for the wake-up subscription. `attempt` rotates
  /// through a cluster's seed nodes, so a failed node is not retried forever.
  pub async fn pubsub(&self, attempt: usize) -> LockResult<redis::aio::PubSub> {
    let opening = async {
      let client = match &self.target {
        Target::Node(source) => source.client().await?,
        Target::Cluster { seeds, .. } => seeds[attempt % seeds.len()].clone(),
      };
      Ok::<_, LockError>(client.get_async_pubsub().await?)
    };
    tokio::time::timeout(self.connect_timeout, opening)
      .await
      .map_err(|_| self.connect_timed_out("open the subscriber connection"))?
  }
}

/// The multiplexed connection to the one node of a non-cluster deployment.
/// It is dropped as soon as it is known to be broken (the socket closed, a
/// command timed out, or the node stopped being the master) and re-opened on
/// the next command, with one attempt bounded by the connect timeout: an
/// outage fails calls fast and with Redis's own reason (e.g. WRONGPASS), and
/// the first call after a dropped idle connection does not hit the dead socket.
#[derive(Clone)]
pub struct NodeConnection {
  shared: Arc<NodeShared>,
}

struct NodeShared {
  source: NodeSource,
  config: AsyncConnectionConfig,
  connect_timeout: Duration,
  client_name: Option<String>,
  /// The open connection and the generation it was opened as.
  current: RwLock<Option<(u64, MultiplexedConnection)>>,
  generation: AtomicU64,
  /// Connection attempts finished so far.
  attempts_done: AtomicU64,
  /// Serialises re-opening, so concurrent commands share one new connection;
  /// holds the error of the last attempt if it failed.
  opening: tokio::sync::Mutex<Option<redis::RedisError>>,
}

impl NodeShared {
  fn current(&self) -> Option<(u64, MultiplexedConnection)> {
    self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
  }

  /// Drops the connection of `generation`, unless a newer one replaced it.
  fn forget(&self, generation: u64) {
    let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
    if current.as_ref().is_some_and(|(open, _)| *open == generation) {
      *current = None;
    }
  }
}

impl NodeConnection {
  async fn current(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
    if let Some(open) = self.shared.current() {
      return Ok(open);
    }
    let attempts_seen = self.shared.attempts_done.load(Ordering::Relaxed);
    let mut failed = self.shared.opening.lock().await;
    if let Some(open) = self.shared.current() {
      return Ok(open);
    }
    // An attempt ran and failed while we queued for the lock: share its
    // outcome, or every queued call would wait out its own connect timeout.
    if self.shared.attempts_done.load(Ordering::Relaxed) != attempts_seen {
      if let Some(error) = failed.clone() {
        return Err(error);
      }
    }
    let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
    let opened = tokio::time::timeout(self.shared.connect_timeout, self.open(generation))
      .await
      .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))
      .and_then(|opened| opened);
    self.shared.attempts_done.fetch_add(1, Ordering::Relaxed);
    let connection = match opened {
      Ok(connection) => connection,
      Err(error) => {
        *failed = Some(error.clone());
        return Err(error);
      }
    };
    *failed = None;
    *self.shared.current.write().unwrap_or_else(|e| e.into_inner()) = Some((generation, connection.clone()));
    Ok((generation, connection))
  }

  async fn open(&self, generation: u64) -> redis::RedisResult<MultiplexedConnection> {
    let client = self.shared.source.client().await?;
    // The driver reports a closed socket at once, even while idle: forget
    // that connection then, not when the next command hits it.
    let shared = Arc::downgrade(&self.shared);
    let config = self.shared.config.clone().set_push_sender(move |push: PushInfo| {
      if push.kind == PushKind::Disconnection {
        if let Some(shared) = shared.upgrade() {
          shared.forget(generation);
        }
      }
      Ok::<(), std::convert::Infallible>(())
    });
    let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
    if let Some(name) = &self.shared.client_name {
      redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .exec_async(&mut connection)
        .await?;
    }
    Ok(connection)
  }

  fn after<T>(&self, generation: u64, outcome: &redis::RedisResult<T>) {
    if let Err(error) = outcome {
      if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
        || error.is_timeout()
        || error.code() == Some("READONLY")
        || error.code() == Some("MASTERDOWN")
      {
        self.shared.forget(generation);
      }
    }
  }
}

/// The connection the engine uses, whatever the deployment.
#[derive(Clone)]
pub enum RedisConnection {
  Node(NodeConnection),
  Cluster(ClusterConnection),
}

impl RedisConnection {
  /// The primaries of a cluster as (host, port), from `CLUSTER SLOTS`.
  pub async fn cluster_primaries(&mut self) -> LockResult<Vec<(String, u16)>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(self).await?;
    let mut primaries = Vec::new();
    for range in slots {
      if let Value::Array(items) = range {
        if let Some(Value::Array(primary)) = items.get(2) {
          let host = primary
            .first()
            .and_then(|value| redis::from_redis_value_ref::<String>(value).ok());
          let port = primary
            .get(1)
            .and_then(|value| redis::from_redis_value_ref::<u16>(value).ok());
          if let (Some(host), Some(port)) = (host, port) {
            if !primaries.contains(&(host.clone(), port)) {
              primaries.push((host, port));
            }
          }
        }
      }
    }
    Ok(primaries)
  }

  /// Sends `cmd` to one cluster node by address (e.g. a SCAN of its keys).
  pub async fn query_node<T: redis::FromRedisValue>(&mut self, cmd: Cmd, host: &str, port: u16) -> LockResult<T> {
    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
    let RedisConnection::Cluster(cluster) = self else {
      return Ok(cmd.query_async(self).await?);
    };
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
      host: host.to_owned(),
      port,
    });
    let value = cluster.route_command(cmd, routing).await?;
    redis::from_redis_value(value).map_err(|error| LockError::Redis(error.to_string()))
  }

  /// Sends `cmd` to the master of `key`'s slot (the one connection outside a
  /// cluster), e.g. `WAIT` after writing that key.
  pub async fn query_slot_master<T: redis::FromRedisValue>(&mut self, cmd: Cmd, key: &str) -> LockResult<T> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
    let RedisConnection::Cluster(cluster) = self else {
      return Ok(cmd.query_async(self).await?);
    };
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
      hash_slot(key),
      SlotAddr::Master,
    )));
    let value = cluster.route_command(cmd, routing).await?;
    redis::from_redis_value(value).map_err(|error| LockError::Redis(error.to_string()))
  }
}

impl ConnectionLike for RedisConnection {
  fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
    match self {
      RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
      RedisConnection::Node(node) => Box::pin(async move {
        let (generation, mut connection) = node.current().await?;
        let outcome = connection.req_packed_command(cmd).await;
        node.after(generation, &outcome);
        outcome
      }),
    }
  }

  fn req_packed_commands<'a>(
    &'a mut self,
    pipeline: &'a Pipeline,
    offset: usize,
    count: usize,
  ) -> RedisFuture<'a, Vec<Value>> {
    match self {
      RedisConnection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
      RedisConnection::Node(node) => Box::pin(async move {
        let (generation, mut connection) = node.current().await?;
        let outcome = connection.req_packed_commands(pipeline, offset, count).await;
        node.after(generation, &outcome);
        outcome
      }),
    }
  }

  fn get_db(&self) -> i64 {
    match self {
      RedisConnection::Cluster(connection) => connection.get_db(),
      RedisConnection::Node(node) => node.shared.current().map_or(0, |(_, connection)| connection.get_db()),
    }
  }
}

/// The cluster hash slot of `key` (Redis's rule: the `{tag}` if it has a
/// non-empty one, else the whole key).
pub fn hash_slot(key: &str) -> u16 {
  crc16::State::<crc16::XMODEM>::calculate(slot_tag(key).as_bytes()) % 16384
}

fn slot_tag(key: &str) -> &str {
  if let Some(open) = key.find('{') {
    if let Some(length) = key[open + 1..].find('}') {
      if length > 0 {
        return &key[open + 1..open + 1 + length];
      }
    }
  }
  key
}

/// A `{…}` hash tag that puts another key in the same slot as `key`.
pub fn same_slot_tag(key: &str) -> String {
  let tag = slot_tag(key);
  if !tag.contains('}') {
    return format!("{{{tag}}}");
  }
  // A key with '}' but no valid tag hashes whole and cannot be embedded.
  format!("{{{}}}", slot_text(hash_slot(key)))
}

/// A short text that hashes to `slot`, the same for every process: the
/// smallest number, in decimal, that does.
pub fn slot_text(slot: u16) -> &'static str {
  static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
  let texts = TEXTS.get_or_init(|| {
    let mut texts = vec![String::new(); 16384];
    let mut missing = texts.len();
    // Every slot is hit within a few hundred thousand numbers.
    for n in 0u32.. {
      let text = n.to_string();
      let slot = usize::from(hash_slot(&text));
      if texts[slot].is_empty() {
        texts[slot] = text;
        missing -= 1;
        if missing == 0 {
          break;
        }
      }
    }
    texts
  });
  &texts[usize::from(slot) % texts.len()]
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn slots_follow_the_redis_rules() {
    // Known values from `CLUSTER KEYSLOT`.
    assert_eq!(hash_slot("foo"), 12182);
    assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
    assert_eq!(hash_slot("foo{}{bar}"), hash_slot("foo{}{bar}"));
    for key in ["medusa_lock:k", "a{b}c", "odd}key", "{}", "x{"] {
      let queue = format!("ferrolock:q:{}{key}", same_slot_tag(key));
      assert_eq!(hash_slot(&queue), hash_slot(key), "{key}");
    }
    for slot in [0, 1, 12182, 16383] {
      assert_eq!(hash_slot(slot_text(slot)), slot);
    }
  }
}
