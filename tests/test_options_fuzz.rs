//! Property tests of option parsing and argument validation (`src/options.rs`)
//! and of building connections from parsed options: arbitrary inputs never
//! panic, every rejection is an `InvalidArgument` whose message names the
//! parameter, what is accepted is within the documented limits, and no
//! password ever shows in an error or in `Debug` output.

use std::time::Duration;

use ferrolock::connection::ConnectionFactory;
use ferrolock::error::LockError;
use ferrolock::options::{
  parse_acquire_args, parse_execute_args, parse_keys, parse_list_args, parse_owner, Input, ServiceOptions,
  MAX_KEYS_PER_CALL, MAX_KEY_BYTES, REDIS_OPTION_NAMES as REDIS_OPTIONS, SERVICE_OPTION_NAMES as SERVICE_OPTIONS,
};
use proptest::prelude::*;

const CASES: u32 = 512;

/// Fields of the call arguments (`acquire`, `release`, `execute`, `listLocks`).
const CALL_ARGS: &[&str] = &["ownerId", "expire", "timeout", "awaitQueue", "pattern", "limit"];

/// Any name a rejection may give as the parameter at fault.
fn names_a_parameter(message: &str) -> bool {
  SERVICE_OPTIONS
    .iter()
    .chain(REDIS_OPTIONS)
    .chain(CALL_ARGS)
    .chain(&[
      "keys",
      "args",
      "options",
      "listLocks options",
      "host",
      "port",
      "ca",
      "cert",
      "key",
      "rejectUnauthorized",
    ])
    .any(|name| message.contains(name))
}

/// Asserts `error` is a rejection of bad input that names a parameter (`expected`, when given).
fn assert_invalid(error: &LockError, expected: Option<&str>) -> Result<(), TestCaseError> {
  let LockError::InvalidArgument(message) = error else {
    return Err(TestCaseError::fail(format!("not an InvalidArgument: {error:?}")));
  };
  prop_assert_eq!(error.code(), "INVALID_ARGUMENT");
  prop_assert_eq!(error.medusa_type(), "invalid_argument");
  match expected {
    Some(name) => prop_assert!(message.contains(name), "{:?} does not name {:?}", message, name),
    None => prop_assert!(names_a_parameter(message), "{:?} names no parameter", message),
  }
  Ok(())
}

fn arb_f64() -> impl Strategy<Value = f64> {
  prop_oneof![
    prop::num::f64::ANY,
    0.0..10_000.0f64,
    prop::sample::select(vec![
      0.0,
      -0.0,
      0.5,
      1.0,
      -1.0,
      -0.001,
      f64::NAN,
      f64::INFINITY,
      f64::NEG_INFINITY,
      9_007_199_254_740_992.0, // 2^53
      1e9,
      1e12,
      1e308,
      f64::MAX,
      f64::MIN_POSITIVE,
      4_294_967_295.0,
    ]),
  ]
}

fn arb_string() -> impl Strategy<Value = String> {
  prop_oneof![
    any::<String>(),
    "[a-z]{0,6}",
    "\\PC{0,40}",
    "[0-9. -]{0,6}",
    prop::sample::select(vec![
      String::new(),
      "*".to_owned(),
      "redis://127.0.0.1:6379".to_owned(),
      "rediss://u:p@localhost:6380/1".to_owned(),
      "redis://[bad".to_owned(),
      "http://x".to_owned(),
      "k".repeat(MAX_KEY_BYTES),
      "k".repeat(MAX_KEY_BYTES + 1),
      "é".repeat(MAX_KEY_BYTES / 2 + 1),
      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned(),
      "5".to_owned(),
      " 10 ".to_owned(),
      "1e400".to_owned(),
      "NaN".to_owned(),
      "-3".to_owned(),
    ]),
  ]
}

fn arb_field_name() -> impl Strategy<Value = String> {
  let known: Vec<String> = SERVICE_OPTIONS
    .iter()
    .chain(REDIS_OPTIONS)
    .chain(CALL_ARGS)
    .chain(&["host", "port", "ca", "cert", "key", "rejectUnauthorized"])
    .map(|name| name.to_string())
    .collect();
  prop_oneof![3 => prop::sample::select(known), 1 => "[a-zA-Z]{0,8}"]
}

fn arb_input() -> impl Strategy<Value = Input> {
  let leaf = prop_oneof![
    Just(Input::Undefined),
    Just(Input::Null),
    any::<bool>().prop_map(Input::Bool),
    arb_f64().prop_map(Input::Number),
    arb_string().prop_map(Input::String),
    any::<usize>().prop_map(Input::LongArray),
    arb_string().prop_map(Input::Bytes),
    prop::sample::select(vec![
      "function",
      "symbol",
      "bigint",
      "string with a lone surrogate",
      "binary data",
      "deeply nested object",
    ])
    .prop_map(Input::Other),
  ];
  leaf.prop_recursive(4, 96, 8, |inner| {
    prop_oneof![
      prop::collection::vec(inner.clone(), 0..8).prop_map(Input::Array),
      prop::collection::vec((arb_field_name(), inner), 0..8).prop_map(Input::Object),
    ]
  })
}

fn object(fields: Vec<(&str, Input)>) -> Input {
  Input::Object(
    fields
      .into_iter()
      .map(|(name, value)| (name.to_owned(), value))
      .collect(),
  )
}

fn url() -> (&'static str, Input) {
  ("redisUrl", Input::String("redis://127.0.0.1:6379".into()))
}

/// Builds the connection layer from parsed options: no I/O, no panic, and only bad-input errors.
fn check_factory(options: &ServiceOptions) -> Result<(), TestCaseError> {
  if let Err(error) = ConnectionFactory::new(&options.connection) {
    assert_invalid(&error, None)?;
  }
  Ok(())
}

proptest! {
  // No regression files in the tree: a failure prints its minimal input.
  #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

  #[test]
  fn keys_never_panic_and_accepted_keys_are_within_limits(input in arb_input()) {
    match parse_keys(&input) {
      Ok(keys) => {
        prop_assert!(!keys.is_empty());
        prop_assert!(keys.len() <= MAX_KEYS_PER_CALL);
        for key in &keys {
          prop_assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES, "{} bytes", key.len());
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), keys.len(), "no duplicates");
        // Exactly the caller's strings, first occurrences, in order.
        let given: Vec<String> = match &input {
          Input::String(key) => vec![key.clone()],
          Input::Array(items) => items
            .iter()
            .map(|item| match item {
              Input::String(key) => Ok(key.clone()),
              other => Err(format!("accepted a non-string key {other:?}")),
            })
            .collect::<Result<_, _>>()
            .map_err(TestCaseError::fail)?,
          other => return Err(TestCaseError::fail(format!("accepted {other:?} as keys"))),
        };
        let mut expected: Vec<String> = Vec::new();
        for key in given {
          if !expected.contains(&key) {
            expected.push(key);
          }
        }
        prop_assert_eq!(keys, expected);
      }
      Err(error) => assert_invalid(&error, Some("keys"))?,
    }
  }

  #[test]
  fn valid_key_lists_are_accepted_in_order(keys in prop::collection::vec("\\PC{1,40}", 1..64)) {
    let input = Input::Array(keys.iter().cloned().map(Input::String).collect());
    let parsed = parse_keys(&input).map_err(|error| TestCaseError::fail(error.to_string()))?;
    let mut expected: Vec<String> = Vec::new();
    for key in keys {
      if !expected.contains(&key) {
        expected.push(key);
      }
    }
    prop_assert_eq!(parsed, expected);
  }

  #[test]
  fn a_key_is_accepted_exactly_up_to_the_byte_limit(unit in prop::sample::select(vec!["k", "é", "日", "🔒"]), extra in 0usize..8) {
    let fitting = unit.repeat(MAX_KEY_BYTES / unit.len());
    prop_assert!(parse_keys(&Input::String(fitting.clone())).is_ok());
    let too_long = format!("{fitting}{}", "x".repeat(MAX_KEY_BYTES - fitting.len() + 1 + extra));
    assert_invalid(&parse_keys(&Input::String(too_long)).unwrap_err(), Some("keys"))?;
  }

  #[test]
  fn call_arguments_never_panic_and_respect_medusa_units(input in arb_input()) {
    match parse_acquire_args(&input) {
      Ok(args) => {
        prop_assert!(!args.owner_id.is_empty());
        if let Some(ttl) = args.lease_ttl {
          prop_assert!(ttl >= Duration::from_secs(1), "expire is at least 1 s: {:?}", ttl);
        }
        if let Some(timeout) = args.timeout {
          prop_assert!(timeout >= Duration::from_secs(1), "timeout is at least 1 s: {:?}", timeout);
        }
      }
      Err(error) => assert_invalid(&error, None)?,
    }
    match parse_execute_args(&input) {
      Ok(args) => {
        prop_assert!(args.lease_ttl >= Duration::from_secs(1));
        prop_assert!(args.timeout.is_none_or(|timeout| timeout >= Duration::from_secs(1)));
      }
      Err(error) => assert_invalid(&error, None)?,
    }
    match parse_owner(&input) {
      Ok(owner) => prop_assert!(!owner.is_empty()),
      Err(error) => assert_invalid(&error, None)?,
    }
    match parse_list_args(&input) {
      Ok(args) => {
        prop_assert!(args.limit >= 1);
        prop_assert!(!args.pattern.is_empty());
      }
      Err(error) => assert_invalid(&error, None)?,
    }
  }

  #[test]
  fn a_bad_call_argument_is_named(name in prop::sample::select(vec!["ownerId", "expire", "timeout", "awaitQueue"]), value in arb_input()) {
    let args = object(vec![(name, value)]);
    let outcomes = [
      parse_acquire_args(&args).err(),
      if name == "ownerId" { parse_owner(&args).err() } else { None },
      if name == "expire" || name == "timeout" { parse_execute_args(&args).err() } else { None },
    ];
    for error in outcomes.iter().flatten() {
      assert_invalid(error, Some(name))?;
    }
  }

  #[test]
  fn seconds_are_accepted_exactly_when_finite_and_not_negative(value in arb_f64()) {
    let args = object(vec![("expire", Input::Number(value)), ("timeout", Input::Number(value))]);
    let valid = value.is_finite() && value >= 0.0;
    prop_assert_eq!(parse_acquire_args(&args).is_ok(), valid, "expire/timeout {}", value);
    prop_assert_eq!(parse_execute_args(&args).is_ok(), valid, "expire/timeout {}", value);
  }

  #[test]
  fn service_options_never_panic(input in arb_input()) {
    match ServiceOptions::parse(&input) {
      Ok(options) => {
        prop_assert!(options.locking.wait_timeout >= Duration::from_secs(1));
        prop_assert!(options.locking.retry_backoff.initial <= options.locking.retry_backoff.max);
        prop_assert!(options.locking.retry_backoff.factor >= 1.0);
        check_factory(&options)?;
      }
      Err(error) => assert_invalid(&error, None)?,
    }
  }

  #[test]
  fn a_bad_option_is_named(name in prop::sample::select(SERVICE_OPTIONS[1..].to_vec()), value in arb_input()) {
    match ServiceOptions::parse(&object(vec![url(), (name, value)])) {
      Ok(options) => check_factory(&options)?,
      Err(error) => assert_invalid(&error, Some(name))?,
    }
  }

  #[test]
  fn a_bad_redis_option_is_named(name in prop::sample::select(REDIS_OPTIONS.to_vec()), value in arb_input()) {
    let redis_options = object(vec![(name, value)]);
    match ServiceOptions::parse(&object(vec![url(), ("redisOptions", redis_options)])) {
      Ok(options) => check_factory(&options)?,
      // A sentinels list needs the master's name, which the error names instead.
      Err(error) if name == "sentinels" => assert_invalid(&error, Some("redisOptions."))?,
      Err(error) => assert_invalid(&error, Some(name))?,
    }
  }

  #[test]
  fn arbitrary_tls_material_is_rejected_or_used_never_panics(
    ca in prop::option::of(arb_string()),
    cert in prop::option::of(arb_string()),
    key in prop::option::of(arb_string()),
    reject_unauthorized in prop::option::of(any::<bool>()),
    scheme in prop::sample::select(vec!["redis", "rediss"]),
  ) {
    let mut tls = Vec::new();
    for (name, value) in [("ca", ca), ("cert", cert), ("key", key)] {
      if let Some(pem) = value {
        tls.push((name, Input::String(pem)));
      }
    }
    if let Some(flag) = reject_unauthorized {
      tls.push(("rejectUnauthorized", Input::Bool(flag)));
    }
    let input = object(vec![
      ("redisUrl", Input::String(format!("{scheme}://127.0.0.1:6380"))),
      ("redisOptions", object(vec![("tls", object(tls))])),
    ]);
    match ServiceOptions::parse(&input) {
      Ok(options) => check_factory(&options)?,
      Err(error) => assert_invalid(&error, Some("tls"))?,
    }
  }

  #[test]
  fn passwords_never_show_in_errors_or_debug_output(
    password in "[A-Za-z0-9]{12,24}",
    template in prop::sample::select(vec![
      "redis://:{p}@127.0.0.1:6379",
      "redis://user:{p}@127.0.0.1:6379/2",
      "rediss://user:{p}@localhost",
      "redis://:{p}@[bad",
      "redis://:{p}@127.0.0.1:99999999",
      "redis://:{p}@127.0.0.1:6379/notadb",
      "http://user:{p}@127.0.0.1",
      "rediss//:{p}@127.0.0.1",
      " redis://:{p}@127.0.0.1",
      "redis://:{p}@",
      "{p}",
    ]),
    where_ in 0..4u8,
  ) {
    let url = template.replace("{p}", &password);
    let input = match where_ {
      0 => object(vec![("redisUrl", Input::String(url))]),
      1 => object(vec![("clusterNodes", Input::Array(vec![Input::String(url)]))]),
      2 => object(vec![
        ("redisUrl", Input::String(url)),
        ("redisOptions", object(vec![("password", Input::String(password.clone())), ("db", Input::Number(-1.0))])),
      ]),
      _ => object(vec![
        ("redisUrl", Input::String(url)),
        ("redisOptions", object(vec![
          ("sentinels", Input::Array(vec![object(vec![("host", Input::String("127.0.0.1".into())), ("port", Input::Number(26379.0))])])),
          ("name", Input::String("mymaster".into())),
          ("sentinelPassword", Input::String(password.clone())),
          ("password", Input::String(password.clone())),
        ])),
      ]),
    };
    match ServiceOptions::parse(&input) {
      Ok(options) => {
        let printed = format!("{options:?} {:?}", options.connection);
        prop_assert!(!printed.contains(&password), "Debug output shows the password: {}", printed);
        match ConnectionFactory::new(&options.connection) {
          Ok(factory) => {
            let printed = format!("{factory:?}");
            prop_assert!(!printed.contains(&password), "the factory's Debug shows the password: {}", printed);
          }
          Err(error) => {
            assert_invalid(&error, None)?;
            prop_assert!(!format!("{error} {error:?}").contains(&password), "error shows the password: {}", error);
          }
        }
      }
      Err(error) => {
        assert_invalid(&error, None)?;
        prop_assert!(!format!("{error} {error:?}").contains(&password), "error shows the password: {}", error);
      }
    }
  }
}
