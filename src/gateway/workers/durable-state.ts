/**
 * Rate limits and MCP session bindings in a Durable Object (issue 16): the budget and the session's
 * owner are shared by every isolate of the Worker, and kept in the object's storage, so they survive
 * isolate eviction and a restart of workerd.
 *
 * One object per key, never one for everything: a rate limit bucket is the object named
 * `rl:<limit's key prefix>:<bucket key>` (one caller's budget under one limit), a session binding
 * the object named `session:<Mcp-Session-Id>`. A Durable Object runs one request at a time, so a
 * single global object would serialise every call of every caller; one per bucket keeps contention
 * to one caller's own calls, and Cloudflare places each object near its first user. The object's
 * input gate makes each `get` → `put` atomic (no other request is delivered while storage is read).
 *
 * The class speaks a small JSON protocol over `fetch` (no `cloudflare:workers` import, so the bundle
 * stays plain and this file runs in Node tests); its storage is `state.storage.get/put`, which works
 * on both SQLite-backed (`new_sqlite_classes`) and key-value (`new_classes`) objects. Stale records
 * are deleted by an alarm at their expiry, and treated as absent when read after it (lazy expiry).
 *
 * The stores fail closed: a stub that throws or answers other than 200 makes the store throw (the
 * session store a `SessionStoreUnavailable`), and the gateway answers 503.
 */
import type { RateLimitOutcome, RateLimitStore } from '../rate-limits.ts';
import { SessionStoreUnavailable, sessionVerdict, type SessionOwner, type SessionStore, type SessionVerdict, type UpstreamSessions } from '../sessions.ts';
import { StateKinds } from './durable-kinds.ts';
import { webRecordUntil, webStateCommand } from './web-sessions.ts';

/** The parts of the Durable Object API used here (no dependency on @cloudflare/workers-types). */
export interface DurableStorage {
  get<T>(key: string): Promise<T | undefined>;
  put(key: string, value: unknown): Promise<void>;
  deleteAll(): Promise<void>;
  setAlarm(at: number): Promise<void>;
}
export interface DurableState {
  storage: DurableStorage;
}
export interface DurableStub {
  fetch(input: string, init?: RequestInit): Promise<Response>;
}
export interface DurableNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): DurableStub;
}

interface Counter {
  windowEnds: number;
  count: number;
}
interface Binding {
  owner: SessionOwner;
  expires: number;
  /** A multiplexed route's session: each upstream's session id (src/gateway/mux/). */
  upstreams?: UpstreamSessions;
}
type Command =
  | { op: 'consume'; points: number; windowMs: number }
  | { op: 'bind'; owner: SessionOwner; idleMs: number }
  | { op: 'check'; owner: SessionOwner; idleMs: number }
  | { op: 'end' }
  | { op: 'set-upstreams'; upstreams: UpstreamSessions }
  | { op: 'upstreams'; idleMs: number };

/** The Durable Object class the Worker bundle exports (bind it as `GATEWAY_STATE`). */
export class GatewayState {
  private readonly storage: DurableStorage;
  /** The `revocations:`, `audit:`, `approval:` and `dpop:` objects (durable-kinds.ts). */
  private readonly kinds: StateKinds;

  constructor(state: DurableState, env?: unknown) {
    this.storage = state.storage;
    this.kinds = new StateKinds(state.storage, (env ?? {}) as Record<string, unknown>);
  }

  async fetch(request: Request): Promise<Response> {
    let command: Command;
    try {
      command = (await request.json()) as Command;
    } catch {
      return new Response('bad request', { status: 400 });
    }
    const other = this.kinds.fetch(command);
    if (other) return other;
    const now = Date.now();
    switch (command.op) {
      case 'consume': {
        if (!(command.points > 0 && command.windowMs > 0)) return new Response('bad request', { status: 400 });
        let counter = await this.storage.get<Counter>('counter');
        if (!counter || counter.windowEnds <= now) {
          counter = { windowEnds: now + command.windowMs, count: 0 };
          await this.storage.setAlarm(counter.windowEnds);
        }
        counter.count++;
        await this.storage.put('counter', counter);
        const outcome: RateLimitOutcome = counter.count <= command.points ? { allowed: true, msBeforeNext: 0 } : { allowed: false, msBeforeNext: counter.windowEnds - now };
        return Response.json(outcome);
      }
      case 'bind':
      case 'check': {
        if (typeof command.owner?.sub !== 'string' || !(command.idleMs > 0)) return new Response('bad request', { status: 400 });
        const binding = await this.storage.get<Binding>('binding');
        const live = binding && binding.expires > now ? binding : undefined;
        const owner = { sub: command.owner.sub, clientId: command.owner.clientId };
        let verdict: SessionVerdict;
        if (!live) {
          verdict = 'unknown';
          // A session already bound keeps its first owner; an absent or lapsed one is bound now.
          if (command.op === 'bind') await this.keep({ owner, expires: now + command.idleMs });
        } else {
          verdict = sessionVerdict(live.owner, owner);
          if (verdict === 'own') await this.keep({ ...live, expires: now + command.idleMs });
        }
        return Response.json({ verdict });
      }
      case 'end':
        await this.storage.deleteAll();
        return Response.json({});
      case 'set-upstreams':
      case 'upstreams': {
        const binding = await this.storage.get<Binding>('binding');
        const live = binding && binding.expires > now ? binding : undefined;
        // No binding: no upstream sessions to read, and none kept for a session nobody holds.
        if (!live) return Response.json(command.op === 'set-upstreams' ? { gone: true } : {});
        if (command.op === 'set-upstreams') {
          if (typeof command.upstreams !== 'object' || command.upstreams === null) return new Response('bad request', { status: 400 });
          await this.storage.put('binding', { ...live, upstreams: command.upstreams });
          return Response.json({});
        }
        if (!(command.idleMs > 0)) return new Response('bad request', { status: 400 });
        await this.keep({ ...live, expires: now + command.idleMs });
        return Response.json({ upstreams: live.upstreams });
      }
      default:
        // The web routes' objects (`web:…`, web-sessions.ts).
        return (await webStateCommand(this.storage, command)) ?? new Response('bad request', { status: 400 });
    }
  }

  private async keep(binding: Binding): Promise<void> {
    await this.storage.put('binding', binding);
    await this.storage.setAlarm(binding.expires);
  }

  /** At a record's expiry: delete it, unless it was renewed since (then wake again at the new one). */
  async alarm(): Promise<void> {
    if (await this.kinds.alarm()) return;
    const now = Date.now();
    const counter = await this.storage.get<Counter>('counter');
    const binding = await this.storage.get<Binding>('binding');
    const until = Math.max(counter?.windowEnds ?? 0, binding?.expires ?? 0, await webRecordUntil(this.storage));
    if (until > now) await this.storage.setAlarm(until);
    else await this.storage.deleteAll();
  }
}

async function call(namespace: DurableNamespace, name: string, command: Command): Promise<unknown> {
  const stub = namespace.get(namespace.idFromName(name));
  // The host part is never resolved: a Durable Object stub's fetch goes to the object.
  const response = await stub.fetch('https://gateway-state/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(command) });
  if (response.status !== 200) throw new Error(`the Durable Object answered ${response.status}`);
  return response.json();
}

/** One command to the object `name` of the namespace; throws unless it answers 200. */
export function callState<C extends { op: string }>(namespace: DurableNamespace, name: string, command: C): Promise<unknown> {
  return call(namespace, name, command as unknown as Command);
}

/** Rate limit buckets in the `GatewayState` Durable Object: one object per limit and bucket key. */
export function durableRateLimits(namespace: DurableNamespace): RateLimitStore {
  return {
    limiter(spec) {
      return {
        async consume(key) {
          try {
            return (await call(namespace, `rl:${spec.keyPrefix}:${key}`, { op: 'consume', points: spec.points, windowMs: spec.windowSeconds * 1000 })) as RateLimitOutcome;
          } catch (error) {
            throw new Error(`rate limit store unavailable: ${(error as Error)?.message ?? String(error)}`);
          }
        },
      };
    },
  };
}

/** MCP session bindings in the `GatewayState` Durable Object: one object per session id. */
export class DurableSessionBindings implements SessionStore {
  constructor(
    private readonly namespace: DurableNamespace,
    private readonly options: { idleMs: number },
  ) {}

  private async send(sessionId: string, command: Command): Promise<unknown> {
    try {
      return await call(this.namespace, `session:${sessionId}`, command);
    } catch (error) {
      throw new SessionStoreUnavailable(error);
    }
  }

  async bind(sessionId: string, owner: SessionOwner): Promise<void> {
    await this.send(sessionId, { op: 'bind', owner, idleMs: this.options.idleMs });
  }

  async check(sessionId: string, owner: SessionOwner): Promise<SessionVerdict> {
    const { verdict } = (await this.send(sessionId, { op: 'check', owner, idleMs: this.options.idleMs })) as { verdict: SessionVerdict };
    return verdict;
  }

  async end(sessionId: string): Promise<void> {
    await this.send(sessionId, { op: 'end' });
  }

  async setUpstreams(sessionId: string, upstreams: UpstreamSessions): Promise<void> {
    const { gone } = (await this.send(sessionId, { op: 'set-upstreams', upstreams })) as { gone?: boolean };
    if (gone) throw new SessionStoreUnavailable(new Error('the session binding is gone'));
  }

  async upstreams(sessionId: string): Promise<UpstreamSessions | undefined> {
    const { upstreams } = (await this.send(sessionId, { op: 'upstreams', idleMs: this.options.idleMs })) as { upstreams?: UpstreamSessions };
    return upstreams;
  }
}

/** Whether a binding looks like a Durable Object namespace. */
export function isDurableNamespace(value: unknown): value is DurableNamespace {
  return typeof value === 'object' && value !== null && typeof (value as DurableNamespace).idFromName === 'function' && typeof (value as DurableNamespace).get === 'function';
}
