/**
 * Audit events at the edge (issue 16). Every event is one JSON line on `console.log` (Workers Logs),
 * as before; with `AUDIT_SINK_URL` set, the events are also delivered to that HTTP sink in batches,
 * through the `GatewayState` Durable Object:
 *
 * - an isolate sends its events in batches (`ISOLATE_BATCH_SIZE` events or `ISOLATE_BATCH_MS`), each
 *   to a shard object `audit:<n>` chosen at random (n < `AUDIT_SINK_SHARDS`), which appends them to
 *   its storage — the request waits for that (`ctx.waitUntil`), not for the sink; a shard keeps at
 *   most `AUDIT_SINK_MAX_STORED` events (default 100,000): past it the oldest are dropped and an
 *   `audit_dropped` marker event (how many, from when to when) takes their place;
 * - the shard's alarm posts them to the sink (`POST`, a JSON array, `Authorization: Bearer
 *   AUDIT_SINK_TOKEN` when set) in batches of at most `AUDIT_SINK_BATCH_SIZE`: at once when that
 *   many are waiting, else `AUDIT_SINK_BATCH_SECONDS` after the first one came;
 * - an event is deleted from the shard's storage only when the sink answered 2xx. A sink that fails
 *   (an error status, no answer in 10 s) gets the same batch again, backing off from 1 s to 5 min.
 *   Delivery is at least once: a batch accepted but whose answer was lost comes again (`request_id`
 *   tells duplicates apart).
 *
 * An event the isolate could not hand to its shard stays in the isolate's queue and goes with the
 * next one. The queue is bounded: when it is full, requests are refused (503 `audit_unavailable`)
 * rather than forwarded with an event that may be lost, as the Node gateway does.
 *
 * The arguments of a tool call are replaced by their SHA-256 (`args_sha256`, hex), never logged, in
 * the console line as in the sink's (the Node gateway's audit line).
 */
import type { GatewayAuditEvent } from '../types.ts';
import { callState, type DurableNamespace, type DurableStorage } from './durable-state.ts';

const DEFAULT_BATCH_SIZE = 100;
const DEFAULT_BATCH_SECONDS = 5;
const DEFAULT_SHARDS = 4;
const MAX_BACKOFF_MS = 5 * 60_000;
const SINK_TIMEOUT_MS = 10_000;
/** Events an isolate keeps while its shard cannot take them; past this, requests are refused. */
const MAX_QUEUED = 1_000;
/** An isolate hands its events over in batches: at most this many per Durable Object call… */
export const ISOLATE_BATCH_SIZE = 50;
/** …sent at the latest this long after the first of them was recorded. */
export const ISOLATE_BATCH_MS = 20;
/** A `settled` wait never outlasts this (workerd's own limit on `waitUntil` after a response). */
const SETTLE_TIMEOUT_MS = 30_000;
/** Events a shard keeps at most (`AUDIT_SINK_MAX_STORED`); past it the oldest go, replaced by an `audit_dropped` marker. */
const DEFAULT_MAX_STORED = 100_000;

/** The storage operations a shard needs beyond `DurableStorage` (both kinds of Durable Object storage have them). */
export interface ListingStorage extends DurableStorage {
  list<T>(options: { prefix: string; limit?: number }): Promise<Map<string, T>>;
  delete(keys: string[]): Promise<number>;
  getAlarm(): Promise<number | null>;
}

export interface AuditCommand {
  op: 'audit';
  events: Record<string, unknown>[];
}

interface Meta {
  /** The sequence number of the next event appended. */
  next: number;
  count: number;
  /** Failed deliveries in a row (the backoff). */
  attempts: number;
}

const number = (value: unknown, fallback: number) => {
  const parsed = typeof value === 'string' && /^[1-9][0-9]*$/.test(value) ? Number(value) : typeof value === 'number' && value > 0 ? value : NaN;
  return Number.isFinite(parsed) ? parsed : fallback;
};

/** The sink's settings, from the Worker's bindings. */
export function auditSinkSettings(env: Record<string, unknown>) {
  const url = typeof env.AUDIT_SINK_URL === 'string' && env.AUDIT_SINK_URL !== '' ? env.AUDIT_SINK_URL : undefined;
  return {
    url,
    token: typeof env.AUDIT_SINK_TOKEN === 'string' && env.AUDIT_SINK_TOKEN !== '' ? env.AUDIT_SINK_TOKEN : undefined,
    batchSize: number(env.AUDIT_SINK_BATCH_SIZE, DEFAULT_BATCH_SIZE),
    batchMs: number(env.AUDIT_SINK_BATCH_SECONDS, DEFAULT_BATCH_SECONDS) * 1000,
    shards: number(env.AUDIT_SINK_SHARDS, DEFAULT_SHARDS),
    maxStored: Math.max(2, number(env.AUDIT_SINK_MAX_STORED, DEFAULT_MAX_STORED)),
  };
}

const seqKey = (n: number) => `e:${String(n).padStart(15, '0')}`;

/** The shard's side (an `audit:` object of `GatewayState`): append, and deliver on the alarm. */
export class AuditShardObject {
  constructor(
    private readonly storage: ListingStorage,
    private readonly env: Record<string, unknown>,
  ) {}

  async append(command: AuditCommand): Promise<Response> {
    if (!Array.isArray(command.events) || command.events.some((event) => typeof event !== 'object' || event === null)) return new Response('bad request', { status: 400 });
    const settings = auditSinkSettings(this.env);
    const stored = await this.storage.get<Meta>('meta');
    if (!stored) await this.storage.put('kind', 'audit');
    const meta = stored ?? { next: 0, count: 0, attempts: 0 };
    for (const event of command.events) await this.storage.put(seqKey(meta.next++), event);
    meta.count += command.events.length;
    if (meta.count > settings.maxStored) await this.dropOldest(meta, meta.count - settings.maxStored + 1);
    await this.storage.put('meta', meta);
    // A sink that is failing keeps its backoff; otherwise a full batch goes at once, a partial one after batchMs.
    const alarm = await this.storage.getAlarm();
    const now = Date.now();
    if (meta.attempts === 0 && meta.count >= settings.batchSize) await this.storage.setAlarm(now);
    else if (alarm === null) await this.storage.setAlarm(now + settings.batchMs);
    return Response.json({ stored: command.events.length });
  }

  /**
   * The shard is full (a sink down for long): the oldest `n` stored entries go, and the last of their
   * places takes an `audit_dropped` marker event saying how many and between which times, so that the
   * sink sees the gap where it is. Storage stays bounded; the console lines still have every event.
   */
  private async dropOldest(meta: Meta, n: number): Promise<void> {
    const oldest = await this.storage.list<Record<string, unknown>>({ prefix: 'e:', limit: n });
    const entries = [...oldest.entries()];
    if (entries.length === 0) return;
    let dropped = 0;
    let from: unknown;
    let to: unknown;
    for (const [, event] of entries) {
      const marker = event?.event === 'audit_dropped';
      dropped += marker && typeof event.dropped === 'number' ? event.dropped : 1;
      from ??= marker ? event.from : event?.time;
      to = marker ? event.to : event?.time;
    }
    const [lastKey] = entries[entries.length - 1]!;
    await this.storage.delete(entries.slice(0, -1).map(([key]) => key));
    await this.storage.put(lastKey, { audit: 'mandate-gateway', event: 'audit_dropped', time: new Date().toISOString(), dropped, from, to, reason: `the shard holds at most ${auditSinkSettings(this.env).maxStored} events and the sink has not taken them` });
    meta.count -= entries.length - 1;
    console.error(JSON.stringify({ level: 'error', msg: 'audit events dropped from the shard: it is full and the sink does not take them (the console lines remain)', dropped: entries.length, stored: meta.count }));
  }

  private async deliver(url: string, token: string | undefined, events: unknown[]): Promise<string | undefined> {
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(events),
        signal: AbortSignal.timeout(SINK_TIMEOUT_MS),
      });
      await response.body?.cancel();
      return response.ok ? undefined : `the audit sink answered ${response.status}`;
    } catch (error) {
      return `the audit sink cannot be reached: ${(error as Error)?.message ?? String(error)}`;
    }
  }

  /**
   * Delivers what is waiting, batch after batch; on failure, the same batch again after a backoff.
   * Events may be appended while the sink is being called (the object takes requests during an
   * outgoing fetch): the count is read again after each call, never kept across one.
   */
  async alarm(): Promise<void> {
    const settings = auditSinkSettings(this.env);
    const waiting = await this.storage.get<Meta>('meta');
    if (!waiting || waiting.count === 0) return;
    // Without a sink URL (removed since) the events wait in storage for one.
    if (!settings.url) return;
    for (;;) {
      const batch = await this.storage.list<unknown>({ prefix: 'e:', limit: settings.batchSize });
      if (batch.size === 0) return;
      const failure = await this.deliver(settings.url, settings.token, [...batch.values()]);
      const meta = (await this.storage.get<Meta>('meta')) ?? { next: 0, count: 0, attempts: 0 };
      if (failure) {
        meta.attempts++;
        await this.storage.put('meta', meta);
        const backoff = Math.min(1000 * 2 ** (meta.attempts - 1), MAX_BACKOFF_MS);
        console.warn(JSON.stringify({ level: 'warn', msg: 'audit events not delivered, retrying', reason: failure, events: meta.count, retry_in_ms: backoff }));
        await this.storage.setAlarm(Date.now() + backoff);
        return;
      }
      await this.storage.delete([...batch.keys()]);
      meta.count = Math.max(0, meta.count - batch.size);
      meta.attempts = 0;
      await this.storage.put('meta', meta);
      if (meta.count === 0) return;
      // A partial batch waits for more (or for batchMs); full ones go at once.
      if (meta.count < settings.batchSize) {
        await this.storage.setAlarm(Date.now() + settings.batchMs);
        return;
      }
    }
  }
}

/** The event as written: the arguments replaced by their SHA-256 (hex), as the Node gateway's audit line. */
export async function auditRecord(event: GatewayAuditEvent): Promise<Record<string, unknown>> {
  const { arguments: args, ...rest } = event;
  if (args === undefined) return { audit: 'mandate-gateway', ...rest };
  try {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(args))));
    return { audit: 'mandate-gateway', ...rest, args_sha256: [...digest].map((byte) => byte.toString(16).padStart(2, '0')).join('') };
  } catch (error) {
    return { audit: 'mandate-gateway', ...rest, audit_error: `the arguments could not be hashed: ${(error as Error).message}` };
  }
}

/**
 * The isolate's side: writes each event's console line and, with a sink, hands the events to the
 * shards in batches — one Durable Object call per `ISOLATE_BATCH_SIZE` events, or `ISOLATE_BATCH_MS`
 * after the first of a batch, whichever comes first — each batch to a shard chosen at random, so
 * load spreads over all of them. The batch is sent by the request whose event filled it or started
 * its timer; every request keeps itself alive (`ctx.waitUntil(settled(id))`) until its own event's
 * batch is handed over, so nothing is lost. Events a failed call could not hand over go back to the
 * isolate's queue and leave with the next batch.
 */
export class EdgeAudit {
  /** Events that a call failed to hand over, oldest first. */
  private readonly queue: { id: string; line: Record<string, unknown> }[] = [];
  /** Events recorded since the last batch left. */
  private buffer: { id: string; line: Record<string, unknown> }[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly waiters = new Map<string, (() => void)[]>();
  /** Requests whose event was handed over (or failed to be) lately: `settled` for them resolves at once. */
  private readonly done = new Set<string>();
  private pendingLines = 0;

  constructor(
    private readonly namespace: DurableNamespace | undefined,
    private readonly settings: ReturnType<typeof auditSinkSettings>,
    private readonly settleTimeoutMs = SETTLE_TIMEOUT_MS,
  ) {}

  /** Whether events go to the sink (a URL and the Durable Object binding). */
  get shipping(): boolean {
    return this.namespace !== undefined && this.settings.url !== undefined;
  }

  private get backlog(): number {
    return this.queue.length + this.buffer.length + this.pendingLines;
  }

  /** The observer's `ready`: refuse (false) while the isolate's queue is full and the shard still does not take it. */
  ready(): Promise<boolean> | undefined {
    if (this.backlog < MAX_QUEUED) return undefined;
    return this.send([]).then(() => this.backlog < MAX_QUEUED);
  }

  record(event: GatewayAuditEvent): void {
    this.pendingLines++;
    void auditRecord(event).then((line) => {
      this.pendingLines--;
      console.log(JSON.stringify(line));
      if (!this.shipping) return this.finish([event.request_id]);
      this.buffer.push({ id: event.request_id, line });
      if (this.buffer.length >= ISOLATE_BATCH_SIZE) return this.flush();
      this.timer ??= setTimeout(() => void this.flush(), ISOLATE_BATCH_MS);
      return undefined;
    });
  }

  /**
   * Resolves when the request's event has been handed to a shard (or that failed); without the sink,
   * when it has been written to the console. A request may ask before its event is recorded (a
   * stream's event is written at its end), so an unknown id waits — at most `settleTimeoutMs`, so
   * that an id whose completion has been forgotten (past the last 4,096) never leaves a waiter behind.
   */
  settled(requestId: string): Promise<void> {
    if (this.done.has(requestId)) return Promise.resolve();
    return new Promise((resolve) => {
      const timeout = setTimeout(() => done(), this.settleTimeoutMs);
      (timeout as { unref?: () => void }).unref?.();
      const done = () => {
        clearTimeout(timeout);
        const list = this.waiters.get(requestId);
        const index = list?.indexOf(done) ?? -1;
        if (list && index >= 0) list.splice(index, 1);
        if (list?.length === 0) this.waiters.delete(requestId);
        resolve();
      };
      const list = this.waiters.get(requestId) ?? [];
      list.push(done);
      this.waiters.set(requestId, list);
    });
  }

  /** Waiters that are still waiting (for tests). */
  get waiting(): number {
    let count = 0;
    for (const list of this.waiters.values()) count += list.length;
    return count;
  }

  private finish(ids: string[]): void {
    for (const id of ids) {
      this.done.add(id);
      for (const resolve of [...(this.waiters.get(id) ?? [])]) resolve();
      this.waiters.delete(id);
    }
    // Only the latest matter (a request asks right after its response; a later ask times out).
    while (this.done.size > 4096) this.done.delete(this.done.values().next().value as string);
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.buffer;
    this.buffer = [];
    return this.send(items);
  }

  /** Hands `items` and whatever is queued to a shard; on failure they are queued again, oldest first. */
  private async send(items: { id: string; line: Record<string, unknown> }[]): Promise<void> {
    if (!this.namespace) return;
    const batch = [...this.queue.splice(0, this.queue.length), ...items];
    if (batch.length === 0) return;
    // Each batch to a shard at random: the load of a busy isolate spreads over all of them.
    const shard = `audit:${Math.floor(Math.random() * this.settings.shards)}`;
    try {
      await callState(this.namespace, shard, { op: 'audit', events: batch.map((item) => item.line) } satisfies AuditCommand);
    } catch (error) {
      this.queue.unshift(...batch);
      // Past the bound the oldest go (counted in the log); `ready` refuses requests before that happens.
      const dropped = this.queue.length > 2 * MAX_QUEUED ? this.queue.splice(0, this.queue.length - 2 * MAX_QUEUED).length : 0;
      console.error(JSON.stringify({ level: 'error', msg: 'audit events kept in the isolate: the Durable Object cannot take them', reason: (error as Error)?.message ?? String(error), queued: this.queue.length, ...(dropped ? { dropped } : {}) }));
    } finally {
      this.finish(items.map((item) => item.id));
    }
  }
}
