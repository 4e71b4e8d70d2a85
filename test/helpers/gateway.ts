import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import pino from 'pino';
import { stringify } from 'yaml';
import { gatewayConfigSchema, type GatewayConfigInput } from '../../src/config/gateway-schema.ts';
import { startGateway, type GatewayHandle } from '../../src/gateway/node/server.ts';
import { freePort } from './auth-server.ts';

async function listen(server: Server): Promise<string> {
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return `http://127.0.0.1:${port}`;
}

const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

/**
 * An issuer whose keys the test holds: RFC 8414 metadata, a JWKS it can rotate, and an
 * introspection endpoint answering from a table — so tokens can be forged in every bad way.
 */
export async function startFakeIssuer() {
  const keys: { kid: string; privateKey: CryptoKey; jwk: JWK }[] = [];
  const addKey = async (kid: string) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    keys.push({ kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } });
  };
  await addKey('k1');
  const introspection = new Map<string, Record<string, unknown>>();
  let jwksHits = 0;
  let introspectionHits = 0;
  let up = true;
  let jwksGate: Promise<void> | undefined;
  let jwksHeld = 0;
  const server = createServer(async (req, res) => {
    if (req.url === '/jwks' && jwksGate) {
      jwksHeld++;
      await jwksGate;
    }
    if (!up) {
      res.writeHead(503).end();
      return;
    }
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/oauth-authorization-server') {
      return send(200, { issuer, jwks_uri: `${issuer}/jwks`, introspection_endpoint: `${issuer}/introspect`, token_endpoint: `${issuer}/token` });
    }
    if (req.url === '/jwks') {
      jwksHits++;
      return send(200, { keys: keys.map((key) => key.jwk) });
    }
    if (req.url === '/introspect') {
      introspectionHits++;
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        const token = new URLSearchParams(body).get('token') ?? '';
        send(200, introspection.get(token) ?? { active: false });
      });
      return;
    }
    send(404, {});
  });
  const issuer = await listen(server);
  return {
    issuer,
    keys,
    addKey,
    introspection,
    get jwksHits() {
      return jwksHits;
    },
    /** JWKS requests that arrived while held (see holdJwks). */
    get jwksHeld() {
      return jwksHeld;
    },
    get introspectionHits() {
      return introspectionHits;
    },
    setUp(value: boolean) {
      up = value;
    },
    /** Holds every JWKS answer until the returned function is called (a key fetch in flight). */
    holdJwks(): () => void {
      let release!: () => void;
      jwksGate = new Promise<void>((resolve) => (release = resolve));
      return () => {
        jwksGate = undefined;
        release();
      };
    },
    /** A token for `aud`, signed by key `kid` (default the first), with `typ` at+jwt unless told. */
    async sign(claims: Record<string, unknown>, options: { kid?: string; typ?: string; key?: CryptoKey; alg?: string } = {}) {
      const key = keys.find((k) => k.kid === (options.kid ?? 'k1')) ?? keys[0]!;
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iss: issuer, iat: now, exp: now + 300, jti: crypto.randomUUID(), ...claims })
        .setProtectedHeader({ alg: options.alg ?? 'ES256', kid: options.kid ?? key.kid, typ: options.typ ?? 'at+jwt' })
        .sign(options.key ?? key.privateKey);
    },
    close: () => close(server),
  };
}

export interface UpstreamRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export const UPSTREAM_TOOLS = ['read_balance', 'transfer', 'echo', 'stream', 'slow', 'fails', 'rpc_error'];

/**
 * Per-tool entries with no rule of their own (`{}`: the route's scopes suffice) for the scripted
 * upstream's tools. `unlisted_tools` is deny by default, so a test route that calls tools lists
 * them, exactly as a deployment must; this does not change any default.
 */
export const listedTools = (names: string[] = UPSTREAM_TOOLS): Record<string, Record<string, never>> => Object.fromEntries(names.map((name) => [name, {}]));

/**
 * A scriptable MCP-shaped upstream with no auth of its own: it records what reached it and
 * answers tools/list, and tools/call for `echo` (JSON), `stream` (SSE with progress), `slow`,
 * `fails` (isError) and `rpc_error` (a JSON-RPC error).
 */
export async function startScriptedUpstream() {
  const requests: UpstreamRequest[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      if (req.method !== 'POST') {
        res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
        return;
      }
      const message = JSON.parse(body) as { id?: number; method: string; params?: { name?: string; arguments?: Record<string, unknown> } };
      if (message.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      const reply = (result: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'upstream-session' });
        res.end(JSON.stringify({ result, jsonrpc: '2.0', id: message.id }));
      };
      if (message.method === 'tools/list') return reply({ tools: UPSTREAM_TOOLS.map((name) => ({ name, inputSchema: { type: 'object' } })) });
      if (message.method !== 'tools/call') return reply({});
      const name = message.params?.name;
      if (name === 'stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let step = 0;
        const timer = setInterval(() => {
          step++;
          if (step <= 3) {
            res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p', progress: step, total: 3 } })}\n\n`);
          } else {
            clearInterval(timer);
            res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: 'streamed' }] } })}\n\n`);
          }
        }, 30);
        return;
      }
      if (name === 'slow') {
        setTimeout(() => reply({ content: [{ type: 'text', text: 'late' }] }), Number(message.params?.arguments?.ms ?? 2000));
        return;
      }
      if (name === 'fails') return reply({ content: [{ type: 'text', text: 'boom' }], isError: true });
      if (name === 'rpc_error') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, error: { code: -32602, message: 'bad params' } }));
        return;
      }
      reply({ content: [{ type: 'text', text: JSON.stringify(message.params?.arguments ?? {}) }] });
    });
  });
  const url = await listen(server);
  return { url, requests, server, close: () => close(server) };
}

export interface TestGateway extends GatewayHandle {
  auditFile: string;
  configFile: string;
  logs: Record<string, unknown>[];
  /** The audit events written so far (flushes first). */
  auditEvents(): Promise<Record<string, unknown>[]>;
}

/** Starts a gateway on a free port; `routes` are complete route objects (their resource may use `{gateway}`). */
export async function startTestGateway(
  build: (gatewayUrl: string) => GatewayConfigInput['routes'],
  extra: Partial<GatewayConfigInput> = {},
  env: Record<string, string | undefined> = process.env,
): Promise<TestGateway> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'mandate-gw-'));
  const auditFile = join(dir, 'audit.jsonl');
  const input: GatewayConfigInput = {
    listen: { host: '127.0.0.1', port },
    admin: { listen: { host: '127.0.0.1', port: 0 } },
    audit: { file: auditFile },
    // Budgets in a shared Redis must not leak from one test run into the next.
    rate_limit_prefix: `mandate-test:${crypto.randomUUID()}`,
    ...extra,
    routes: build(`http://127.0.0.1:${port}`),
  };
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(configFile, stringify(input));
  const logs: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const gateway = await startGateway(gatewayConfigSchema.parse(input), { log, configFile, watchIntervalMs: 100, env });
  return {
    ...gateway,
    auditFile,
    configFile,
    logs,
    async auditEvents() {
      await gateway.audit.flush();
      return readFileSync(auditFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
  };
}

export const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'content-type': 'application/json' };

/** POSTs one JSON-RPC message to the gateway. */
export async function mcpPost(url: string, message: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(url, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body: typeof message === 'string' ? message : JSON.stringify(message) });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

export const toolCall = (name: string, args: Record<string, unknown> = {}, id = 1) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

/** Polls `done` (every 25 ms, at most 10 s) and fails with `what` if it never holds. */
async function eventually(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 25));
  if (!done()) throw new Error(`never happened: ${what}`);
}

/**
 * A client that goes away while the gateway's filters run: sends `request` to `/mcp` on a raw
 * connection, closes it while the gateway fetches `issuer`'s keys (held), waits until the gateway
 * (in this process) has seen the connection close, lets the key fetch go on, and returns the
 * `client_closed` audit event (undefined if none is written within 5 s).
 */
export async function leaveDuringKeyFetch(gateway: TestGateway, issuer: Awaited<ReturnType<typeof startFakeIssuer>>, request: { method: string; headers: Record<string, string>; body?: string }) {
  const port = Number(new URL(gateway.url).port);
  const gatewaySockets = () => (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => (h as Socket).localPort === port && !(h as Socket).destroyed);
  const release = issuer.holdJwks();
  const held = issuer.jwksHeld;
  const socket = connect(port, '127.0.0.1');
  const headers = { host: `127.0.0.1:${port}`, ...request.headers, ...(request.body ? { 'content-length': String(Buffer.byteLength(request.body)) } : {}) };
  socket.write(`${request.method} /mcp HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${request.body ?? ''}`);
  await eventually('the gateway is fetching the issuer keys', () => issuer.jwksHeld === held + 1);
  socket.destroy();
  await eventually('the gateway saw the client go', () => gatewaySockets().length === 0);
  release();
  let event: Record<string, unknown> | undefined;
  for (let i = 0; i < 200 && !event; i++) {
    event = (await gateway.auditEvents()).find((e) => e.rejection === 'client_closed');
    if (!event) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return event;
}
