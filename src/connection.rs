//! Building and owning the Redis connection. The engine only sees
//! [`RedisConnection`]; Cluster and Sentinel will be further ways to build one.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, IntoConnectionInfo, TlsCertificates};

use crate::error::{LockError, LockResult};
use crate::options::ConnectionOptions;

/// A multiplexed connection that reconnects behind the same handle; clones
/// share one socket and pipeline concurrent commands on it.
pub type RedisConnection = ConnectionManager;

/// Everything needed to open a connection, checked before any I/O.
#[derive(Clone)]
pub struct ConnectionFactory {
  client: Client,
  config: ConnectionManagerConfig,
  connect_timeout: Duration,
  client_name: Option<String>,
}

impl std::fmt::Debug for ConnectionFactory {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let info = self.client.get_connection_info();
    let address = match info.addr() {
      ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
      ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
      other => format!("{other:?}"),
    };
    f.debug_struct("ConnectionFactory")
      .field("address", &address)
      .field("connect_timeout", &self.connect_timeout)
      .finish_non_exhaustive()
  }
}

fn invalid_url() -> LockError {
  LockError::invalid("\"redisUrl\" is not a valid Redis URL (it is not shown here, as it may hold a password)")
}

impl ConnectionFactory {
  pub fn new(options: &ConnectionOptions) -> LockResult<Self> {
    let mut info = options.url.as_str().into_connection_info().map_err(|_| invalid_url())?;

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

    let client = match &options.tls {
      None => Client::open(info),
      Some(tls) => {
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
        Client::build_with_tls(
          info,
          TlsCertificates {
            client_tls,
            root_cert: tls.ca.clone().map(String::into_bytes),
          },
        )
      }
    }
    .map_err(|error| LockError::invalid(format!("\"redisOptions.tls\" could not be used: {error}")))?;

    let config = ConnectionManagerConfig::new()
      .set_connection_timeout(Some(options.connect_timeout))
      .set_response_timeout(Some(options.command_timeout))
      .set_number_of_retries(options.reconnect_retries)
      .set_max_delay(Duration::from_secs(2));
    Ok(ConnectionFactory {
      client,
      config,
      connect_timeout: options.connect_timeout,
      client_name: options.client_name.clone(),
    })
  }

  /// A dedicated connection for the wake-up subscription.
  pub async fn pubsub(&self) -> LockResult<redis::aio::PubSub> {
    tokio::time::timeout(self.connect_timeout, self.client.get_async_pubsub())
      .await
      .map_err(|_| LockError::Redis("could not open the subscriber connection within the connect timeout".into()))?
      .map_err(LockError::from)
  }

  /// Opens the connection; fails within the connect timeout when Redis is unreachable.
  pub async fn connect(&self) -> LockResult<RedisConnection> {
    let connecting = ConnectionManager::new_with_config(self.client.clone(), self.config.clone());
    let mut connection = tokio::time::timeout(self.connect_timeout, connecting)
      .await
      .map_err(|_| {
        LockError::Redis(format!(
          "could not connect to Redis within the connect timeout ({} ms)",
          self.connect_timeout.as_millis()
        ))
      })??;
    if let Some(name) = &self.client_name {
      // Set once per service; a reconnect does not repeat it.
      redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .exec_async(&mut connection)
        .await?;
    }
    Ok(connection)
  }
}
