#!/usr/bin/env node
'use strict'
// `npx ferrolock`: see and release the locks held in Redis.
//
//   ferrolock locks [--owner <id>] [--pattern <glob>] [--limit <n>]
//   ferrolock release <key...> [--owner <id>]
//
// Exit codes: 0 success, 1 operation failed (Redis unreachable, lock not
// found or not released), 2 usage error. Errors go to stderr and never show
// the password of the Redis URL.

const fs = require('node:fs')
const path = require('node:path')
const { parseArgs } = require('node:util')

const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_USAGE = 2

const DEFAULT_URL = 'redis://127.0.0.1:6379'
const URL_ENV_VARS = ['FERROLOCK_REDIS_URL', 'LOCKING_REDIS_URL', 'REDIS_URL']
const DEFAULT_NAMESPACE = 'medusa_lock:'
const MAX_LIMIT = 100_000

const OPTIONS = {
  url: { type: 'string' },
  'tls-ca': { type: 'string' },
  cluster: { type: 'boolean' },
  namespace: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  owner: { type: 'string' },
  pattern: { type: 'string' },
  limit: { type: 'string' },
}
const COMMON_OPTIONS = ['url', 'tls-ca', 'cluster', 'namespace', 'json', 'help', 'version']

const COMMON_HELP = `Options:
  --url <redis-url>     redis:// or rediss:// (TLS) URL, with user, password and db
                        (default: $FERROLOCK_REDIS_URL, $LOCKING_REDIS_URL, $REDIS_URL,
                        then ${DEFAULT_URL})
  --tls-ca <file>       PEM certificate(s) of a private CA to trust (implies TLS)
  --cluster             Redis Cluster: --url is any node, every master is read
  --namespace <prefix>  prefix of the lock keys, as configured in the service
                        (default "${DEFAULT_NAMESPACE}")
  --json                print JSON instead of text
  -h, --help            show help
  -v, --version         show the version`

const EXIT_HELP = `Exit codes: 0 success, 1 operation failed (Redis unreachable, lock not found or
not released), 2 usage error.`

const COMMANDS = {
  locks: {
    options: ['owner', 'pattern', 'limit'],
    help: `Usage: ferrolock locks [--owner <id>] [--pattern <glob>] [--limit <n>] [options]

Lists the locks held in the namespace: key, owner, remaining TTL, and the
callers queued for the key. OWNER "*" is a lock taken without owner id.

  --owner <id>          only this owner's locks ("*": those taken without owner)
  --pattern <glob>      Redis glob on the key, namespace excluded, e.g. 'cart_*'
                        (default "*")
  --limit <n>           list at most n locks, 1 to ${MAX_LIMIT} (default 1000)

${COMMON_HELP}

${EXIT_HELP}`,
  },
  release: {
    options: ['owner'],
    help: `Usage: ferrolock release <key...> [--owner <id>] [options]

Releases each key; the first caller queued for it gets it next.

  --owner <id>          release only if this owner holds the lock ("*": only if
                        it was taken without owner)

Without --owner the lock is released whoever holds it: ferrolock reads the
holder, then deletes the key only if that holder still has it, so a lock that
changed hands in between is left alone (exit 1). Releasing the lock of a
running execute() makes its job's signal abort with LOCK_LOST.

${COMMON_HELP}

${EXIT_HELP}`,
  },
}

const GLOBAL_HELP = `Usage: ferrolock <command> [options]

See and release the locks ferrolock (or Medusa's locking-redis) holds in Redis.

Commands:
  locks                 list held locks: key, owner, TTL, waiters
  release <key...>      release locks, whoever holds them or only --owner's
  help [command]        show the help of a command

${COMMON_HELP}

${EXIT_HELP}

Examples:
  npx ferrolock locks --pattern 'cart_*'
  npx ferrolock release cart_123
  npx ferrolock release cart_123 --owner worker-7 --url rediss://:secret@redis.example.com:6380`

const isCommand = (word) => typeof word === 'string' && Object.hasOwn(COMMANDS, word)

class UsageError extends Error {
  constructor(message, command) {
    super(message)
    this.command = command
  }
}

// --- arguments ---------------------------------------------------------------

/** The first line of parseArgs's message, shortened to what a shell user needs. */
function parseErrorMessage(error) {
  const quoted = redactUrl(/'([^']+)'/.exec(error.message)?.[1] ?? '')
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option '${quoted}'`
  if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const name = quoted?.split(' ')[0]
    if (/does not take an argument/.test(error.message)) return `option '${name}' takes no value`
    if (/ambiguous/.test(error.message)) return `option '${name}' needs a value (write ${name}=<value> for a value starting with '-')`
    return `option '${name}' needs a value`
  }
  return error.message.split('\n')[0]
}

function parse(argv) {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true })
  } catch (error) {
    // Still honour --help when the rest of the line is wrong.
    if (argv.includes('--help') || argv.includes('-h')) return { help: true, command: argv.find(isCommand) }
    throw new UsageError(parseErrorMessage(error), argv.find(isCommand))
  }
  const { values, positionals } = parsed
  let [command, ...rest] = positionals
  if (command === 'help') {
    if (rest.length > 1 || (rest[0] !== undefined && !isCommand(rest[0]))) {
      throw new UsageError(`unknown command '${redactUrl(rest.join(' '))}'`)
    }
    return { help: true, command: rest[0] }
  }
  if (values.help) return { help: true, command: isCommand(command) ? command : undefined }
  if (values.version) return { version: true }
  if (command === undefined) throw new UsageError('missing command (locks or release)')
  if (!isCommand(command)) throw new UsageError(`unknown command '${redactUrl(command)}'`)

  const spec = COMMANDS[command]
  for (const name of Object.keys(values)) {
    if (!COMMON_OPTIONS.includes(name) && !spec.options.includes(name)) {
      throw new UsageError(`option '--${name}' is not valid for '${command}'`, command)
    }
  }
  for (const name of ['url', 'tls-ca', 'owner', 'pattern']) {
    if (values[name] === '') throw new UsageError(`option '--${name}' must not be empty`, command)
  }
  let limit
  if (values.limit !== undefined) {
    limit = /^\d+$/.test(values.limit) ? Number(values.limit) : Number.NaN
    if (!(limit >= 1 && limit <= MAX_LIMIT)) {
      throw new UsageError(`option '--limit' must be a whole number from 1 to ${MAX_LIMIT}`, command)
    }
  }
  if (command === 'locks' && rest.length > 0) {
    throw new UsageError(`'locks' takes no arguments, got '${redactUrl(rest[0])}' (filter with --pattern <glob>)`, command)
  }
  if (command === 'release' && rest.length === 0) throw new UsageError("'release' needs at least one key", command)

  return {
    command,
    keys: [...new Set(rest)],
    ...(values.url !== undefined ? { url: values.url, urlSource: '--url' } : urlFromEnv()),
    tlsCa: values['tls-ca'],
    cluster: values.cluster === true,
    namespace: values.namespace,
    json: values.json === true,
    owner: values.owner,
    pattern: values.pattern,
    limit,
  }
}

/** The Redis URL from the environment, and where it came from (for messages). */
function urlFromEnv() {
  for (const name of URL_ENV_VARS) {
    if (process.env[name]) return { url: process.env[name], urlSource: `$${name}` }
  }
  return { url: DEFAULT_URL, urlSource: 'the default URL' }
}

// --- secrets -----------------------------------------------------------------

/** The URL with its password (or a lone user-info part, which Redis may read as one) replaced by ***. */
function redactUrl(url) {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*)@/i, (_, scheme, userinfo) => {
    const colon = userinfo.indexOf(':')
    return colon < 0 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`
  })
}

/** The password of the URL, raw and decoded, to scrub from any message (a last line of defence). */
function secretsOf(url) {
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/([^@/?#]*)@/i.exec(url)?.[1]
  if (!userinfo) return []
  const colon = userinfo.indexOf(':')
  const raw = colon < 0 ? userinfo : userinfo.slice(colon + 1)
  let decoded = raw
  try {
    decoded = decodeURIComponent(raw)
  } catch {}
  // Very short secrets would garble every message they happen to occur in.
  return [...new Set([raw, decoded])].filter((secret) => secret.length >= 4)
}

// --- output ------------------------------------------------------------------

function formatTtl(ms) {
  if (ms === null || ms === undefined) return 'no expiry'
  if (ms < 1000) return `${ms}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.floor(ms / 1000)
  const pad = (n) => String(n).padStart(2, '0')
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`
  return `${Math.floor(s / 86_400)}d${pad(Math.floor((s % 86_400) / 3600))}h`
}

const ownerLabel = (ownerId) => ownerId ?? '*'
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`

function table(locks) {
  const header = ['KEY', 'OWNER', 'TTL', 'WAITERS']
  const rows = locks.map((lock) => [lock.key, ownerLabel(lock.ownerId), formatTtl(lock.ttlMs), String(lock.waiters)])
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i].length)))
  const line = (cells) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
  return [line(header), ...rows.map(line)].join('\n')
}

/** A Redis glob that matches exactly `key`. */
function exactGlob(key) {
  return key.replace(/[*?[\]\\]/g, '\\$&')
}

// --- commands ----------------------------------------------------------------

async function listCommand(locks, args, out) {
  const found = await locks.listLocks({ ownerId: args.owner, pattern: args.pattern, limit: args.limit })
  found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const limit = args.limit ?? 1000
  if (args.json) {
    out(JSON.stringify(found, null, 2))
  } else if (found.length === 0) {
    const filters = [args.pattern && `matching '${args.pattern}'`, args.owner && `held by ${JSON.stringify(args.owner)}`]
    out(`No locks ${filters.filter(Boolean).join(' ')}${filters.some(Boolean) ? ' ' : ''}in namespace ${JSON.stringify(namespaceOf(args))}.`)
  } else {
    out(table(found))
  }
  if (found.length >= limit) {
    process.stderr.write(`ferrolock: showing the first ${limit} locks; there may be more (raise --limit)\n`)
  }
  return EXIT_OK
}

const namespaceOf = (args) => args.namespace ?? DEFAULT_NAMESPACE

async function holderOf(locks, key) {
  const [lock] = await locks.listLocks({ pattern: exactGlob(key), limit: 1 })
  return lock
}

async function releaseOne(locks, key, args) {
  const name = JSON.stringify(key)
  const inNamespace = `in namespace ${JSON.stringify(namespaceOf(args))}`
  if (args.owner !== undefined) {
    const before = await holderOf(locks, key)
    if (await locks.release([key], { ownerId: args.owner })) {
      const lock = before ?? { key, ownerId: args.owner === '*' ? null : args.owner, ttlMs: null, waiters: 0 }
      return { result: { ...lock, released: true } }
    }
    const now = await holderOf(locks, key)
    if (!now) {
      return { result: { key, released: false, reason: 'not_found' }, error: `${name} not released: no such lock ${inNamespace}` }
    }
    return {
      result: { ...now, released: false, reason: 'not_owner' },
      error: `${name} not released: held by ${JSON.stringify(ownerLabel(now.ownerId))}, not by ${JSON.stringify(args.owner)}`,
    }
  }
  const lock = await holderOf(locks, key)
  if (!lock) {
    return { result: { key, released: false, reason: 'not_found' }, error: `${name} not released: no such lock ${inNamespace}` }
  }
  // Compare-and-delete with the holder just read: if it changed since, nothing is deleted.
  const released = await locks.release([key], lock.ownerId === null ? {} : { ownerId: lock.ownerId })
  if (released) return { result: { ...lock, released: true } }
  return {
    result: { ...lock, released: false, reason: 'holder_changed' },
    error: `${name} not released: it changed hands while releasing (was held by ${JSON.stringify(ownerLabel(lock.ownerId))}); run 'ferrolock locks' and try again`,
  }
}

async function releaseCommand(locks, args, out, err) {
  const results = []
  for (const key of args.keys) {
    const { result, error } = await releaseOne(locks, key, args)
    results.push(result)
    if (error) err(error)
    else if (!args.json) {
      out(
        `released ${JSON.stringify(key)} (held by ${ownerLabel(result.ownerId)}, TTL ${formatTtl(result.ttlMs)}, ` +
          `${plural(result.waiters, 'waiter')} queued)`,
      )
    }
  }
  if (args.json) out(JSON.stringify(results, null, 2))
  return results.every((r) => r.released) ? EXIT_OK : EXIT_FAILED
}

/** Redis Cluster answers a single-node client with these. */
function clusterHint(error, args) {
  return !args.cluster && /\b(CROSSSLOT|MOVED|ASK|CLUSTERDOWN)\b/i.test(error.message) ? '; a Redis Cluster? add --cluster' : ''
}

// --- main --------------------------------------------------------------------

let secrets = []
const scrub = (text) => secrets.reduce((t, secret) => t.split(secret).join('***'), String(text))
const out = (text) => process.stdout.write(text + '\n')
const err = (text) => process.stderr.write(`ferrolock: ${scrub(text)}\n`)

async function main(argv) {

  let args
  try {
    args = parse(argv)
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    err(error.message)
    process.stderr.write(`Run 'ferrolock ${error.command ? `${error.command} ` : ''}--help' for usage.\n`)
    return EXIT_USAGE
  }
  if (args.help) {
    out(args.command ? COMMANDS[args.command].help : GLOBAL_HELP)
    return EXIT_OK
  }
  if (args.version) {
    out(require(path.join(__dirname, '..', 'package.json')).version)
    return EXIT_OK
  }

  secrets = secretsOf(args.url)
  const where = redactUrl(args.url)
  const { LockingModuleService } = require('..')
  const options = args.cluster ? { clusterNodes: [args.url] } : { redisUrl: args.url }
  if (args.namespace !== undefined) options.namespace = args.namespace
  if (args.tlsCa !== undefined) {
    try {
      options.redisOptions = { tls: { ca: fs.readFileSync(args.tlsCa, 'utf8') } }
    } catch (error) {
      err(`cannot read --tls-ca ${JSON.stringify(args.tlsCa)}: ${error.code ?? error.message}`)
      return EXIT_FAILED
    }
  }
  let locks
  try {
    locks = await LockingModuleService.connect(options)
  } catch (error) {
    if (error.code === 'INVALID_ARGUMENT') {
      err(error.message.replace(/"(redisUrl|clusterNodes)"/, args.urlSource).replace(/"namespace"/, '--namespace'))
      process.stderr.write(`Run 'ferrolock ${args.command} --help' for usage.\n`)
      return EXIT_USAGE
    }
    err(`cannot connect to Redis at ${where}: ${error.message}${clusterHint(error, args)}`)
    return EXIT_FAILED
  }
  try {
    return args.command === 'locks' ? await listCommand(locks, args, out) : await releaseCommand(locks, args, out, err)
  } catch (error) {
    err(error.code === 'REDIS_ERROR' ? `${error.message} (Redis at ${where})${clusterHint(error, args)}` : error.message)
    return error.code === 'INVALID_ARGUMENT' ? EXIT_USAGE : EXIT_FAILED
  } finally {
    await locks.close()
  }
}

// `ferrolock locks | head -1` closes stdout early: not an error.
process.stdout.on('error', (error) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK)
  throw error
})

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
    // The service holds no handle after close(); should anything still, don't hang the shell.
    setTimeout(() => process.exit(code), 2000).unref()
  },
  (error) => {
    err(`unexpected error: ${error?.stack ?? error}`)
    process.exit(EXIT_FAILED)
  },
)

