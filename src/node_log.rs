//! Routes the engine's `tracing` events to the JS logger of the service that
//! emitted them (the `service` field), at or above the level it asked for.
//! With no logger registered, every ferrolock callsite is disabled at the
//! cost of one atomic load.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use once_cell::sync::Lazy;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// `logger[level](message)`, called on the JS thread; weak, so a logger
/// never keeps the process alive.
pub type LogSink = ThreadsafeFunction<FnArgs<(String, String)>, (), FnArgs<(String, String)>, Status, false, true>;

struct JsLogger {
  /// The most verbose level this logger wants (1 error … 5 trace).
  max_rank: u8,
  sink: LogSink,
}

static LOGGERS: Lazy<RwLock<HashMap<u64, Arc<JsLogger>>>> = Lazy::new(Default::default);
/// The most verbose level any registered logger wants; 0 = none.
static MAX_RANK: AtomicU8 = AtomicU8::new(0);

fn rank(level: &Level) -> u8 {
  match *level {
    Level::ERROR => 1,
    Level::WARN => 2,
    Level::INFO => 3,
    Level::DEBUG => 4,
    Level::TRACE => 5,
  }
}

/// The level a `logLevel` option names, or `None` when it names none.
pub fn parse_level(name: &str) -> Option<u8> {
  match name {
    "error" => Some(1),
    "warn" => Some(2),
    "info" => Some(3),
    "debug" => Some(4),
    "trace" => Some(5),
    _ => None,
  }
}

fn level_name(level: &Level) -> &'static str {
  match *level {
    Level::ERROR => "error",
    Level::WARN => "warn",
    Level::INFO => "info",
    Level::DEBUG => "debug",
    Level::TRACE => "debug",
  }
}

fn refresh_max_rank(loggers: &HashMap<u64, Arc<JsLogger>>) {
  let max = loggers.values().map(|logger| logger.max_rank).max().unwrap_or(0);
  MAX_RANK.store(max, Ordering::Relaxed);
}

pub fn register(service: u64, max_rank: u8, sink: LogSink) {
  let mut loggers = LOGGERS.write().unwrap_or_else(|e| e.into_inner());
  loggers.insert(service, Arc::new(JsLogger { max_rank, sink }));
  refresh_max_rank(&loggers);
}

pub fn unregister(service: u64) {
  let mut loggers = LOGGERS.write().unwrap_or_else(|e| e.into_inner());
  if loggers.remove(&service).is_some() {
    refresh_max_rank(&loggers);
  }
}

/// Installs the bridge as the process's `tracing` subscriber (once, at load).
pub fn install() {
  use tracing_subscriber::layer::SubscriberExt;
  let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(LogBridge));
}

struct LogBridge;

impl<S: Subscriber> Layer<S> for LogBridge {
  fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
    if metadata.target().starts_with("ferrolock") {
      Interest::sometimes()
    } else {
      Interest::never()
    }
  }

  fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
    rank(metadata.level()) <= MAX_RANK.load(Ordering::Relaxed)
  }

  fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
    let mut line = LogLine::default();
    event.record(&mut line);
    let Some(service) = line.service else {
      return;
    };
    let logger = LOGGERS.read().unwrap_or_else(|e| e.into_inner()).get(&service).cloned();
    if let Some(logger) = logger {
      let level = event.metadata().level();
      if rank(level) <= logger.max_rank {
        // Warnings and errors are complete sentences (Medusa's own, where it
        // has one); the chattier levels say where they come from.
        let text = if rank(level) <= rank(&Level::WARN) {
          line.text
        } else {
          format!("ferrolock: {}", line.text)
        };
        let args = (level_name(level).to_owned(), text);
        logger.sink.call(args.into(), ThreadsafeFunctionCallMode::NonBlocking);
      }
    }
  }
}

/// An event as one line: its message, then its other fields as `name=value`.
#[derive(Default)]
struct LogLine {
  service: Option<u64>,
  text: String,
}

impl Visit for LogLine {
  fn record_u64(&mut self, field: &Field, value: u64) {
    if field.name() == "service" {
      self.service = Some(value);
    } else {
      self.record_debug(field, &value);
    }
  }

  fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
    if field.name() == "message" {
      let fields = std::mem::take(&mut self.text);
      let _ = write!(self.text, "{value:?}{fields}");
    } else {
      let _ = write!(self.text, " {}={value:?}", field.name());
    }
  }
}
