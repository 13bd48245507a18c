//! Error kinds of the lock engine, each with a stable code and Medusa's error type.

use std::fmt;

/// Everything a lock operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
  /// A key is held by someone else (Medusa's wording, key as the caller gave it).
  Conflict { key: String },
  /// Waiting for the keys outlasted the timeout.
  Timeout,
  /// A lease ended (key deleted, expired or taken over) while its job was running.
  Lost { keys: Vec<String> },
  /// Bad input, rejected before anything reached Redis.
  InvalidArgument(String),
  /// Redis could not be reached or answered with an error.
  Redis(String),
  /// The service was closed.
  Closed,
}

impl LockError {
  pub fn invalid(message: impl Into<String>) -> Self {
    LockError::InvalidArgument(message.into())
  }

  /// Stable machine-readable code, exposed to JS as `error.code`.
  pub fn code(&self) -> &'static str {
    match self {
      LockError::Conflict { .. } => "LOCK_CONFLICT",
      LockError::Timeout => "LOCK_TIMEOUT",
      LockError::Lost { .. } => "LOCK_LOST",
      LockError::InvalidArgument(_) => "INVALID_ARGUMENT",
      LockError::Redis(_) => "REDIS_ERROR",
      LockError::Closed => "CLOSED",
    }
  }

  /// Medusa's `MedusaError.Types` value; Medusa answers `conflict` with HTTP 409.
  pub fn medusa_type(&self) -> &'static str {
    match self {
      LockError::Conflict { .. } | LockError::Timeout | LockError::Lost { .. } => "conflict",
      LockError::InvalidArgument(_) => "invalid_argument",
      LockError::Redis(_) | LockError::Closed => "unexpected_state",
    }
  }
}

impl fmt::Display for LockError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      LockError::Conflict { key } => write!(f, "Failed to acquire lock for key \"{key}\""),
      LockError::Timeout => f.write_str("Timed-out acquiring lock."),
      // Medusa's wording for the same event.
      LockError::Lost { keys } => write!(
        f,
        "Lost the lock for key(s) \"{}\" while the job was still running: the lease expired before it could be renewed. Increase \"expire\" if the job is expected to run this long.",
        keys.join("\", \"")
      ),
      LockError::InvalidArgument(message) => f.write_str(message),
      LockError::Redis(message) => write!(f, "Redis error: {message}"),
      LockError::Closed => f.write_str("The lock service is closed"),
    }
  }
}

impl std::error::Error for LockError {}

impl From<redis::RedisError> for LockError {
  fn from(error: redis::RedisError) -> Self {
    // RedisError's Display never includes the connection URL or password.
    LockError::Redis(error.to_string())
  }
}

pub type LockResult<T> = Result<T, LockError>;
