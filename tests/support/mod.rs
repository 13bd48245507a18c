//! Starts a throwaway `redis-server` on a free port for one test, stopped by pid on drop.
#![allow(dead_code)] // each test binary uses its own part of the support code

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrolock::connection::ConnectionFactory;
use ferrolock::engine::LockEngine;
use ferrolock::options::{Input, ServiceOptions};

pub struct RedisServer {
  pub port: u16,
  child: Child,
  dir: std::path::PathBuf,
}

impl RedisServer {
  pub fn start() -> RedisServer {
    for _ in 0..20 {
      let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
      let dir = std::env::temp_dir().join(format!("ferrolock-rs-{}-{port}", std::process::id()));
      std::fs::create_dir_all(&dir).unwrap();
      let child = Command::new("redis-server")
        .args([
          "--port",
          &port.to_string(),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
      let mut server = RedisServer { port, child, dir };
      if server.wait_ready() {
        return server;
      }
    }
    panic!("could not start redis-server");
  }

  fn wait_ready(&mut self) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
      if matches!(self.child.try_wait(), Ok(Some(_))) {
        return false;
      }
      if let Ok(client) = redis::Client::open(self.url()) {
        if let Ok(mut connection) = client.get_connection() {
          if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
            return true;
          }
        }
      }
      std::thread::sleep(Duration::from_millis(20));
    }
    false
  }

  pub fn url(&self) -> String {
    format!("redis://127.0.0.1:{}", self.port)
  }

  pub fn client(&self) -> redis::Connection {
    redis::Client::open(self.url()).unwrap().get_connection().unwrap()
  }

  pub fn engine(&self, extra: &[(&str, Input)]) -> LockEngine {
    engine_for(&self.url(), extra)
  }
}

pub fn engine_for(url: &str, extra: &[(&str, Input)]) -> LockEngine {
  let mut fields = vec![("redisUrl".to_string(), Input::String(url.to_string()))];
  fields.extend(extra.iter().map(|(name, value)| (name.to_string(), value.clone())));
  let options = ServiceOptions::parse(&Input::Object(fields)).unwrap();
  LockEngine::new(ConnectionFactory::new(&options.connection).unwrap(), options.locking)
}

impl Drop for RedisServer {
  fn drop(&mut self) {
    let _ = self.child.kill();
    let _ = self.child.wait();
    let _ = std::fs::remove_dir_all(&self.dir);
  }
}
