//! Building and owning Redis connections: one server, a Redis Cluster, or a
//! master found through Sentinel. The engine only sees [`RedisConnection`],
//! which behaves the same in all three.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
  AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture,
  TlsCertificates, TlsMode, Value,
};

use crate::error::{LockError, LockResult};
use crate::options::{ConnectionOptions, Deployment, TlsOptions};

/// Where commands go.
#[derive(Clone)]
enum Target {
  /// Reconnects behind the same handle; clones share one socket and pipeline
  /// concurrent commands on it.
  Standalone {
    client: Client,
    config: ConnectionManagerConfig,
  },
  /// Follows MOVED/ASK redirections and topology changes; `seeds` serve the
  /// wake-up subscription (PUBLISH reaches every node of a cluster).
  Cluster { client: ClusterClient, seeds: Vec<Client> },
  /// Asks the sentinels for the current master whenever a connection must be (re)made.
  Sentinel {
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
    config: AsyncConnectionConfig,
  },
}

/// Everything needed to open connections, checked before any I/O.
#[derive(Clone)]
pub struct ConnectionFactory {
  target: Target,
  connect_timeout: Duration,
  client_name: Option<String>,
}

impl std::fmt::Debug for ConnectionFactory {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let deployment = match &self.target {
      Target::Standalone { client, .. } => match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        other => format!("{other:?}"),
      },
      Target::Cluster { seeds, .. } => format!("cluster of {} seed nodes", seeds.len()),
      Target::Sentinel { .. } => "sentinel".to_owned(),
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
  if let Some(keep_alive) = options.keep_alive {
    let mut keepalive = socket2::TcpKeepalive::new();
    if !keep_alive.is_zero() {
      keepalive = keepalive.with_time(keep_alive);
    }
    let tcp = info.tcp_settings().clone().set_keepalive(keepalive);
    info = info.set_tcp_settings(tcp);
  }
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

fn open_client(info: ConnectionInfo, tls: Option<&TlsOptions>) -> LockResult<Client> {
  match tls {
    None => Client::open(info).map_err(tls_error),
    Some(tls) => Client::build_with_tls(info, certificates(tls)?).map_err(tls_error),
  }
}

impl ConnectionFactory {
  pub fn new(options: &ConnectionOptions) -> LockResult<Self> {
    let target = match &options.deployment {
      Deployment::Standalone => {
        let info = connection_info(&options.url, "redisUrl", options)?;
        let config = ConnectionManagerConfig::new()
          .set_connection_timeout(Some(options.connect_timeout))
          .set_response_timeout(Some(options.command_timeout))
          .set_number_of_retries(options.reconnect_retries)
          .set_max_delay(Duration::from_secs(2));
        Target::Standalone {
          client: open_client(info, options.tls.as_ref())?,
          config,
        }
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
          let mode = if tls.reject_unauthorized {
            TlsMode::Secure
          } else {
            TlsMode::Insecure
          };
          builder = builder.tls(mode).certs(certificates(tls)?);
        }
        Target::Cluster {
          client: builder.build().map_err(tls_error)?,
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
          .set_client_to_redis_db(info.redis_settings().db());
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
          let mode = if tls.reject_unauthorized {
            TlsMode::Secure
          } else {
            TlsMode::Insecure
          };
          builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_redis_certificates(certificates(tls)?);
        }
        Target::Sentinel {
          sentinel: Arc::new(tokio::sync::Mutex::new(builder.build().map_err(tls_error)?)),
          config: AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout)),
        }
      }
    };
    Ok(ConnectionFactory {
      target,
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

  /// Opens the connection; fails within the connect timeout when Redis is unreachable.
  pub async fn connect(&self) -> LockResult<RedisConnection> {
    let connecting = async {
      Ok::<_, LockError>(match &self.target {
        Target::Standalone { client, config } => {
          RedisConnection::Standalone(ConnectionManager::new_with_config(client.clone(), config.clone()).await?)
        }
        Target::Cluster { client, .. } => RedisConnection::Cluster(client.get_async_connection().await?),
        Target::Sentinel { sentinel, config } => {
          let connection = SentinelConnection {
            shared: Arc::new(SentinelShared {
              sentinel: sentinel.clone(),
              config: config.clone(),
              current: RwLock::new(None),
            }),
          };
          connection.current().await?;
          RedisConnection::Sentinel(connection)
        }
      })
    };
    let mut connection = tokio::time::timeout(self.connect_timeout, connecting)
      .await
      .map_err(|_| self.connect_timed_out("connect to Redis"))??;
    if let (Some(name), RedisConnection::Standalone(_)) = (&self.client_name, &connection) {
      // Set once per service; a reconnect does not repeat it.
      redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .exec_async(&mut connection)
        .await?;
    }
    Ok(connection)
  }

  /// A dedicated connection for the wake-up subscription. `attempt` rotates
  /// through a cluster's seed nodes, so a failed node is not retried forever.
  pub async fn pubsub(&self, attempt: usize) -> LockResult<redis::aio::PubSub> {
    let opening = async {
      let client = match &self.target {
        Target::Standalone { client, .. } => client.clone(),
        Target::Cluster { seeds, .. } => seeds[attempt % seeds.len()].clone(),
        Target::Sentinel { sentinel, .. } => sentinel.lock().await.async_get_client().await?,
      };
      Ok::<_, LockError>(client.get_async_pubsub().await?)
    };
    tokio::time::timeout(self.connect_timeout, opening)
      .await
      .map_err(|_| self.connect_timed_out("open the subscriber connection"))?
  }
}

/// A connection to whatever node Sentinel says is the master; dropped and
/// re-resolved after a failure, so a failover is followed without re-creating
/// the service.
#[derive(Clone)]
pub struct SentinelConnection {
  shared: Arc<SentinelShared>,
}

struct SentinelShared {
  sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
  config: AsyncConnectionConfig,
  current: RwLock<Option<MultiplexedConnection>>,
}

impl SentinelConnection {
  async fn current(&self) -> redis::RedisResult<MultiplexedConnection> {
    if let Some(connection) = self.shared.current.read().unwrap_or_else(|e| e.into_inner()).clone() {
      return Ok(connection);
    }
    let mut sentinel = self.shared.sentinel.lock().await;
    if let Some(connection) = self.shared.current.read().unwrap_or_else(|e| e.into_inner()).clone() {
      return Ok(connection);
    }
    let connection = sentinel.get_async_connection_with_config(&self.shared.config).await?;
    *self.shared.current.write().unwrap_or_else(|e| e.into_inner()) = Some(connection.clone());
    Ok(connection)
  }

  /// After a failover the old master answers READONLY (or not at all):
  /// forget it, so the next command asks the sentinels again.
  fn after(&self, outcome: &redis::RedisResult<impl Sized>) {
    if let Err(error) = outcome {
      if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.code() == Some("READONLY")
        || error.code() == Some("MASTERDOWN")
      {
        *self.shared.current.write().unwrap_or_else(|e| e.into_inner()) = None;
      }
    }
  }
}

/// The connection the engine uses, whatever the deployment.
#[derive(Clone)]
pub enum RedisConnection {
  Standalone(ConnectionManager),
  Cluster(ClusterConnection),
  Sentinel(SentinelConnection),
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
}

impl RedisConnection {
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
      RedisConnection::Standalone(connection) => connection.req_packed_command(cmd),
      RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
      RedisConnection::Sentinel(connection) => Box::pin(async move {
        let mut current = connection.current().await?;
        let outcome = current.req_packed_command(cmd).await;
        connection.after(&outcome);
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
      RedisConnection::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
      RedisConnection::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
      RedisConnection::Sentinel(connection) => Box::pin(async move {
        let mut current = connection.current().await?;
        let outcome = current.req_packed_commands(pipeline, offset, count).await;
        connection.after(&outcome);
        outcome
      }),
    }
  }

  fn get_db(&self) -> i64 {
    match self {
      RedisConnection::Standalone(connection) => connection.get_db(),
      RedisConnection::Cluster(connection) => connection.get_db(),
      RedisConnection::Sentinel(_) => 0,
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
  // A key with '}' but no valid tag hashes whole and cannot be embedded: use
  // any short text of the same slot (found in a few thousand tries at most).
  let slot = hash_slot(key);
  let text = (0u32..)
    .map(|n| n.to_string())
    .find(|text| crc16::State::<crc16::XMODEM>::calculate(text.as_bytes()) % 16384 == slot)
    .unwrap_or_default();
  format!("{{{text}}}")
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
  }
}
