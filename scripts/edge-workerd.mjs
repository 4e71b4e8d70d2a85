// Runs the gateway's Worker bundle (dist-edge/gateway.js, `npm run edge:build`) in workerd through
// Miniflare's API, both installed by `npm run edge:install` under .cache/edge. Miniflare needs
// Node 22, so run this with that Node (or `npm run edge:dev`):
//
//   .cache/edge/node_modules/node/bin/node scripts/edge-workerd.mjs --config gateway.yaml \
//     [--port 0] [--host 127.0.0.1] [--script dist-edge/gateway.js] [--binding NAME=VALUE]...
//     [--persist <dir>] [--instances N] [--env-binding NAME]...
//     [--verified-tokens kv|off|unavailable] [--cache on|off] [--kv-seed <file.json>] [--state on|off]
//   .cache/edge/node_modules/node/bin/node scripts/edge-workerd.mjs --entry todo-mcp \
//     [--script dist-edge/todo-mcp.js] --binding TODO_MCP_ISSUER=... [--binding ...]... [the options above]
//
// The config (YAML or JSON, the Node gateway's file) becomes the MANDATE_GATEWAY_CONFIG binding;
// each --binding is another string binding (the secrets a route names); --env-binding NAME binds
// the environment variable NAME's value (a secret then appears on no command line). GATEWAY_STATE is bound to
// the bundle's GatewayState Durable Object (rate limits, MCP session bindings): kept in memory, or
// in <dir> with --persist, so that a restart with the same directory keeps the budgets and sessions;
// --state off leaves it unbound (the Worker then keeps that state per isolate, as without the binding).
// --instances N runs the Worker N times, each in its own isolate, all bound to the first one's
// GatewayState (as isolates of one Worker share its Durable Objects); the others listen on free
// loopback ports, listed in {"urls": [...]}. VERIFIED_TOKENS is a KV namespace shared by every
// instance (the verified-token cache; in memory, never persisted: it is a cache), or absent with
// --verified-tokens off, or a binding whose every call fails with --verified-tokens unavailable (to
// test that a failing KV only costs a verification). The Cache API (caches.default, the AS's key
// set) is on, or a no-op in every instance with --cache off. --kv-seed <file.json> writes entries
// ([{"key", "value", "expirationTtl"?}], a value not a string is written as JSON) into
// VERIFIED_TOKENS before the Worker serves: for tests of entries the Worker did not write itself
// (one read back after its token expired, as KV's approximate expiry allows). Prints one JSON line
// {"url": ...} when workerd listens; the Worker's logs (its audit lines) follow on stdout. Stops on
// SIGTERM/SIGINT, or when stdin is a pipe and closes.
//
// --entry todo-mcp runs the Todo MCP server's Worker (dist-edge/todo-mcp.js) instead: no --config,
// its TODO_MCP_* bindings given with --binding, and TODO_SESSIONS bound to its TodoSessions Durable
// Object (the same --persist and --instances).
import { fstatSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const options = { port: '0', host: '127.0.0.1', script: undefined, config: undefined, persist: undefined, instances: '1', entry: 'gateway', 'verified-tokens': 'kv', cache: 'on', 'kv-seed': undefined, state: 'on' };
// Each entry's bundle and Durable Object binding (the class its bundle exports).
const ENTRIES = {
  gateway: { script: 'gateway.js', state: 'GATEWAY_STATE', className: 'GatewayState' },
  'todo-mcp': { script: 'todo-mcp.js', state: 'TODO_SESSIONS', className: 'TodoSessions' },
};
const bindings = {};
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i += 2) {
  const [flag, value] = [args[i], args[i + 1]];
  if (value === undefined) usage();
  if (flag === '--binding') {
    const eq = value.indexOf('=');
    if (eq <= 0) usage();
    bindings[value.slice(0, eq)] = value.slice(eq + 1);
  } else if (flag === '--env-binding') {
    if (process.env[value] === undefined) {
      console.error(`--env-binding ${value}: the environment variable is not set`);
      process.exit(2);
    }
    bindings[value] = process.env[value];
  } else if (['--port', '--host', '--script', '--config', '--persist', '--instances', '--entry', '--verified-tokens', '--cache', '--kv-seed', '--state'].includes(flag)) options[flag.slice(2)] = value;
  else usage();
}
const entry = ENTRIES[options.entry];
if (!entry || (options.entry === 'gateway') !== Boolean(options.config) || !/^[1-9]$/.test(options.instances) || !['kv', 'off', 'unavailable'].includes(options['verified-tokens']) || !['on', 'off'].includes(options.cache) || !['on', 'off'].includes(options.state)) usage();
options.script ??= join(root, 'dist-edge', entry.script);

function usage() {
  console.error('usage: scripts/edge-workerd.mjs [--config <gateway.yaml|json> | --entry todo-mcp] [--port N] [--host H] [--script F] [--binding NAME=VALUE]... [--env-binding NAME]... [--persist <dir>] [--instances N] [--verified-tokens kv|off|unavailable] [--cache on|off] [--kv-seed <file.json>] [--state on|off]');
  process.exit(2);
}

let miniflare;
try {
  miniflare = await import(pathToFileURL(createRequire(join(root, '.cache', 'edge', 'package.json')).resolve('miniflare')).href);
} catch {
  console.error('Miniflare is not installed: run `npm run edge:install`');
  process.exit(3);
}
const config = options.config ? parse(readFileSync(resolve(options.config), 'utf8')) : undefined;
const instances = Number(options.instances);
const worker = (i) => ({
  name: `${options.entry}-${i + 1}`,
  modules: true,
  scriptPath: resolve(options.script),
  // Module names are paths relative to this root: the bundle's own directory, wherever it is.
  modulesRoot: dirname(resolve(options.script)),
  compatibilityDate: '2026-07-01',
  // request.signal aborts when the client goes away: a stream is then cancelled and audited (src/gateway/workers/index.ts).
  compatibilityFlags: ['enable_request_signal'],
  bindings: config ? { ...bindings, MANDATE_GATEWAY_CONFIG: JSON.stringify(config) } : bindings,
  durableObjects: options.state === 'off' ? {} : { [entry.state]: i === 0 ? entry.className : { className: entry.className, scriptName: `${options.entry}-1` } },
  ...(i === 0 ? {} : { unsafeDirectSockets: [{ host: options.host, port: 0 }] }),
  ...{ kv: { kvNamespaces: { VERIFIED_TOKENS: 'verified-tokens' } }, off: {}, unavailable: { wrappedBindings: { VERIFIED_TOKENS: 'unavailable-kv' } } }[options['verified-tokens']],
  cache: options.cache === 'on',
});
// A KV-shaped binding whose calls all fail, as an unreachable KV would.
const unavailableKv = {
  name: 'unavailable-kv',
  modules: true,
  script: `const fail = async () => { throw new Error('KV is unavailable (edge-workerd --verified-tokens unavailable)'); };
export default function () { return { get: fail, put: fail }; }`,
};
const mf = new miniflare.Miniflare({
  workers: [...Array.from({ length: instances }, (_, i) => worker(i)), ...(options['verified-tokens'] === 'unavailable' ? [unavailableKv] : [])],
  host: options.host,
  port: Number(options.port),
  durableObjectsPersist: options.persist ? resolve(options.persist) : false,
});
const url = (await mf.ready).href.replace(/\/$/, '');
if (options['kv-seed'] && options['verified-tokens'] === 'kv') {
  const kv = await mf.getKVNamespace('VERIFIED_TOKENS', `${options.entry}-1`);
  for (const { key, value, expirationTtl } of JSON.parse(readFileSync(resolve(options['kv-seed']), 'utf8'))) {
    await kv.put(key, typeof value === 'string' ? value : JSON.stringify(value), expirationTtl ? { expirationTtl } : undefined);
  }
}
const urls = [url];
for (let i = 1; i < instances; i++) urls.push((await mf.unsafeGetDirectURL(`${options.entry}-${i + 1}`)).href.replace(/\/$/, ''));
console.log(JSON.stringify(instances > 1 ? { url, urls } : { url }));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose().catch(() => undefined);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Started by a test through a pipe: the test's end (even a crash) closes it and stops workerd too.
// Node's `stdio: 'pipe'` gives the child a socket pair, not a FIFO: both count.
const stdin = fstatSync(0);
if (stdin.isFIFO() || stdin.isSocket()) {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
