//! The Lua scripts, one file each, hashed once and run with EVALSHA
//! (redis-rs reloads a script on NOSCRIPT, e.g. after a Redis restart).
//! `queue.lua` holds the waiter-queue helpers shared by the scripts that
//! touch queues; it is prepended at compile time.

use once_cell::sync::Lazy;
use redis::Script;

macro_rules! with_queue {
  ($file:literal) => {
    concat!(include_str!("scripts/queue.lua"), include_str!($file))
  };
}

pub static ACQUIRE: Lazy<Script> = Lazy::new(|| Script::new(with_queue!("scripts/acquire.lua")));
pub static RELEASE: Lazy<Script> = Lazy::new(|| Script::new(with_queue!("scripts/release.lua")));
pub static DEQUEUE: Lazy<Script> = Lazy::new(|| Script::new(with_queue!("scripts/dequeue.lua")));
pub static EXTEND: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/extend.lua")));
pub static INSPECT: Lazy<Script> = Lazy::new(|| Script::new(with_queue!("scripts/inspect.lua")));
