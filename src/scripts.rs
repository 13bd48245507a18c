//! The Lua scripts, one file each, hashed once and run with EVALSHA
//! (redis-rs reloads a script on NOSCRIPT, e.g. after a Redis restart).

use once_cell::sync::Lazy;
use redis::Script;

pub static ACQUIRE: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/acquire.lua")));
pub static RELEASE: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/release.lua")));
pub static EXTEND: Lazy<Script> = Lazy::new(|| Script::new(include_str!("scripts/extend.lua")));
