/**
 * The demo's Todo MCP server as a Cloudflare Worker (issue 16, seed 000's topology): the same
 * runtime-neutral handler as on Node (`mcp.ts`), bundled by `npm run edge:build` into
 * `dist-edge/todo-mcp.js`, configured by bindings (examples/edge/todo-mcp.wrangler.jsonc):
 *
 * - `TODO_MCP_ISSUER`, `TODO_MCP_RESOURCE` (its own URL, the `aud` its tokens carry), `TODO_API_URL`,
 *   `TODO_MCP_CLIENT_ID`, `TODO_MCP_CLIENT_SECRET` (a secret: its client at the AS, for the token
 *   exchange and the revocation list), `TODO_MCP_ALLOWED_ORIGINS` (browser origins, comma-separated);
 *   optional `TODO_MCP_REVOCATION_POLL_SECONDS` (10), `TODO_MCP_SESSION_IDLE_SECONDS` (86400),
 *   `TODO_MCP_DPOP` (`off`, the default here; `allow`: Bearer as before and DPoP-bound tokens with
 *   their proof; `require`: DPoP only — RFC 9449 §7; proof `jti`s are remembered per isolate). A
 *   DPoP-bound token sent as Bearer is refused whatever the mode.
 * - `TODO_SESSIONS`, a Durable Object namespace of the exported class `TodoSessions` (required):
 *   each MCP session's owner (sub, client), one object per session (`session:<Mcp-Session-Id>`),
 *   so another caller's use of a session id is refused (404) in every isolate and after a restart,
 *   and DELETE ends it. `TodoSessions` is the gateway's `GatewayState` class: the same tested
 *   binding protocol (bind, check, end, idle expiry by alarm), only its `session:` objects are used.
 *
 * Why not the Agents SDK's McpAgent (one Durable Object per session running the transport)? The
 * tools keep no state between calls — everything follows from the caller's token — so the only
 * per-session state is who owns the session; routing every call through one object would add a
 * hop to a single-threaded object for nothing, and the Agents SDK needs `nodejs_compat`, which
 * Mandate's Worker code never uses. So the SDK's web-standard transport serves each request in the
 * isolate that receives it, and the Durable Object only answers "whose session is this?".
 *
 * Nothing happens at global scope: the handler is built on the first request (and again when a
 * binding changes). A missing or invalid binding answers 500 with a generic message, the reason
 * in the logs. Nothing runs on a timer (a timer set in a request never fires after it): the
 * revocation list is polled on use, as the gateway's Worker polls a route's list without
 * GATEWAY_STATE (`RevocationList`'s `startOnUse`): the first request of an isolate waits for the
 * first list (while none loads, a poll at most once a second, requests meanwhile joining it or
 * getting 503), later ones start a poll (`waitUntil`) when the last began an interval ago; and the
 * AS's key set is refreshed on use (`jwksSchedule: 'on-use'`, the fetch under `waitUntil`).
 * Refusals are logged as JSON lines `{"audit":"mandate-todo-mcp",…}`.
 */
import { z } from 'zod';
import { RevocationList } from '../../src/gateway/revocation-list.ts';
import { DEFAULT_SESSION_IDLE_SECONDS } from '../../src/gateway/sessions.ts';
import { DurableSessionBindings, GatewayState, isDurableNamespace } from '../../src/gateway/workers/durable-state.ts';
import { TODO_MCP_DPOP_MODES, todoMcpHandler, type TodoMcpHandler } from './mcp.ts';

/** The Durable Object class to bind as `TODO_SESSIONS` (MCP sessions' owners). */
export class TodoSessions extends GatewayState {}

export type TodoMcpWorkerEnv = {
  TODO_MCP_ISSUER?: string;
  TODO_MCP_RESOURCE?: string;
  TODO_API_URL?: string;
  TODO_MCP_CLIENT_ID?: string;
  TODO_MCP_CLIENT_SECRET?: string;
  TODO_MCP_ALLOWED_ORIGINS?: string;
  TODO_MCP_REVOCATION_POLL_SECONDS?: string;
  TODO_MCP_SESSION_IDLE_SECONDS?: string;
  TODO_MCP_DPOP?: string;
  TODO_SESSIONS?: unknown;
} & Record<string, unknown>;

/** The part of `ExecutionContext` used here. */
export interface WorkerContext {
  waitUntil(promise: Promise<unknown>): void;
}

const httpUrl = z.url({ protocol: /^https?$/ });
const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);
const configSchema = z.object({
  TODO_MCP_ISSUER: httpUrl,
  TODO_MCP_RESOURCE: httpUrl,
  TODO_API_URL: httpUrl,
  TODO_MCP_CLIENT_ID: z.string().min(1),
  TODO_MCP_CLIENT_SECRET: z.string().min(16),
  TODO_MCP_ALLOWED_ORIGINS: z.string().default(''),
  TODO_MCP_REVOCATION_POLL_SECONDS: seconds(10),
  TODO_MCP_SESSION_IDLE_SECONDS: seconds(DEFAULT_SESSION_IDLE_SECONDS),
  TODO_MCP_DPOP: z.enum(TODO_MCP_DPOP_MODES).default('off'),
});
const CONFIG_KEYS = Object.keys(configSchema.shape) as (keyof z.infer<typeof configSchema>)[];

interface Built {
  source: string;
  handler: TodoMcpHandler;
}

class ConfigError extends Error {
  override name = 'ConfigError';
}

function build(source: string, env: TodoMcpWorkerEnv): Built {
  const parsed = configSchema.safeParse(Object.fromEntries(CONFIG_KEYS.map((key) => [key, env[key]])));
  if (!parsed.success) {
    // Never a value in the message (one is a secret): the binding names and what is wrong.
    throw new ConfigError(`invalid bindings: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  }
  if (!isDurableNamespace(env.TODO_SESSIONS)) throw new ConfigError('the TODO_SESSIONS Durable Object binding (class TodoSessions) is missing');
  const config = parsed.data;
  const log = (record: Record<string, unknown>) => console.log(JSON.stringify({ audit: 'mandate-todo-mcp', ...record }));
  const revocations = new RevocationList({
    endpoint: `${config.TODO_MCP_ISSUER.replace(/\/$/, '')}/revocations`,
    issuer: config.TODO_MCP_ISSUER,
    clientId: config.TODO_MCP_CLIENT_ID,
    clientSecret: config.TODO_MCP_CLIENT_SECRET,
    pollMs: config.TODO_MCP_REVOCATION_POLL_SECONDS * 1000,
    startOnUse: true,
    onError: (error) => console.warn(JSON.stringify({ level: 'warn', msg: 'cannot read the revocation list', reason: error.message })),
  });
  const handler = todoMcpHandler({
    issuer: config.TODO_MCP_ISSUER,
    resource: config.TODO_MCP_RESOURCE,
    todoApi: config.TODO_API_URL.replace(/\/$/, ''),
    clientId: config.TODO_MCP_CLIENT_ID,
    clientSecret: config.TODO_MCP_CLIENT_SECRET,
    allowedOrigins: config.TODO_MCP_ALLOWED_ORIGINS.split(/[\s,]+/).filter(Boolean),
    revocations,
    jwksSchedule: 'on-use',
    dpop: config.TODO_MCP_DPOP,
    sessions: new DurableSessionBindings(env.TODO_SESSIONS, { idleMs: config.TODO_MCP_SESSION_IDLE_SECONDS * 1000 }),
    onRefusal: (refusal) => log({ decision: 'deny', ...refusal }),
  });
  return { source, handler };
}

let built: Built | undefined;

function handlerFor(env: TodoMcpWorkerEnv): Built {
  const source = JSON.stringify([...CONFIG_KEYS.map((key) => env[key] ?? null), isDurableNamespace(env.TODO_SESSIONS)]);
  if (built?.source === source) return built;
  const next = build(source, env);
  built?.handler.close();
  built = next;
  return built;
}

export default {
  async fetch(request: Request, env: TodoMcpWorkerEnv, ctx: WorkerContext): Promise<Response> {
    let current: Built;
    try {
      current = handlerFor(env);
    } catch (error) {
      console.error(JSON.stringify({ level: 'error', msg: 'cannot build the Todo MCP server', reason: (error as Error).message }));
      return Response.json({ jsonrpc: '2.0', id: null, error: { code: -32603, message: 'server not configured' } }, { status: 500 });
    }
    return current.handler.fetch(request, { waitUntil: (promise) => ctx.waitUntil(promise) });
  },
};
