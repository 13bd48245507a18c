#![deny(clippy::all)]
//! ferrolock: a Redis distributed lock. The engine (`engine`, `lease`,
//! `scripts`) knows nothing of Node.js; `node` holds the napi bindings.

pub mod connection;
pub mod engine;
pub mod error;
pub mod lease;
pub mod options;
mod scripts;
pub mod stats;
pub mod wake;

#[cfg(feature = "node")]
mod node;
#[cfg(feature = "node")]
mod node_calls;
#[cfg(feature = "node")]
mod node_log;
