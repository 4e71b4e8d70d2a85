/**
 * The revocation feed at the edge (issue 16): one Durable Object per feed polls the authorization
 * server's `/revocations` on its alarm and keeps the list in its storage; the isolates read the list
 * from the object and keep their copy for `ISOLATE_LIST_MS`. So the AS is polled once per
 * `poll_seconds` whatever the number of isolates, and a revocation reaches every isolate within
 * `poll_seconds` + `ISOLATE_LIST_MS`.
 *
 * The object is named `revocations:<endpoint> <client_id>`. It polls with the same `RevocationList`
 * as the Node gateway (incremental `since` + `If-None-Match`, revocations only added, the last list
 * kept in force when a poll fails) and stores the list's snapshot. The client secret is never sent
 * to the object nor stored: the isolate names the binding that holds it (`client_secret_env`), and
 * the object reads that binding from its own environment (a Durable Object has the Worker's).
 *
 * The verdicts are the Node list's: `unavailable` (503) until a first list is loaded, then the list
 * as loaded, the last one staying in force while polls fail. Two edge-only cases fail closed too:
 * an object that cannot be reached once the isolate's copy is too old, and an object that stopped
 * polling because nobody read it for `idleMs` (no alarm costs for an unused feed) whose catch-up poll
 * on the next read fails — its list could miss everything revoked meanwhile.
 */
import { RevocationList, type RevocationListOptions, type RevocationSnapshot, type RevocationVerdict } from '../revocation-list.ts';
import type { TokenClaims } from '../token-validator.ts';
import type { ListingStorage } from './durable-audit.ts';
import { callState, type DurableNamespace } from './durable-state.ts';

/** A read of the object still pending after this long is abandoned and another one started. */
const STALE_READ_MS = 6_000;

/** How long an isolate uses the list it read from the object before reading it again. */
export const ISOLATE_LIST_MS = 1_000;
/** While the list is not loaded, a read polls at most this often (the alarm's interval may be long). */
const UNLOADED_RETRY_MS = 1_000;
/** How often a read records that the list is in use (the idle threshold is at least 10 min). */
const READ_MARK_MS = 60_000;

/** What the isolate tells the object about its feed: never the secret, only where to find it. */
export interface FeedConfig {
  endpoint: string;
  issuer?: string;
  clientId: string;
  /** The binding holding the client secret, read by the object from its own environment. */
  secretEnv: string;
  pollMs: number;
}

export interface RevocationsCommand {
  op: 'revocations';
  feed: FeedConfig;
  /** The version of the list the isolate has: answered `{ version }` alone when it is still current. */
  known?: number;
}

interface Stored {
  feed: FeedConfig;
  snapshot?: RevocationSnapshot;
  version: number;
  /** When the last poll began (epoch ms): polls are at least `pollMs` apart. */
  polledAt?: number;
  /** When an isolate last read the list. */
  readAt: number;
  /** Polling stopped (nobody read it for `idleMs`): the next read must catch up first. */
  idle?: boolean;
}

export interface RevocationsAnswer {
  version: number;
  snapshot?: RevocationSnapshot;
}

const sameFeed = (a: FeedConfig, b: FeedConfig) => a.endpoint === b.endpoint && a.clientId === b.clientId && a.issuer === b.issuer;
const contents = (snapshot: RevocationSnapshot) => JSON.stringify([snapshot.loaded, snapshot.tokens, snapshot.grants, snapshot.clients, snapshot.lastError]);

/**
 * The object's side (a `revocations:` object of `GatewayState`): the list, polled on the alarm.
 * One per object instance; its `RevocationList` is rebuilt from storage after an eviction.
 */
export class RevocationFeedObject {
  private list: RevocationList | undefined;
  private listFeed: string | undefined;
  /** The poll running, if any: a read that needs a list waits for it rather than answering "not loaded". */
  private polling: Promise<boolean> | undefined;

  constructor(
    private readonly storage: ListingStorage,
    private readonly env: Record<string, unknown>,
    private readonly idleMs: (pollMs: number) => number = (pollMs) => Math.max(10 * 60_000, 10 * pollMs),
  ) {}

  private listFor(stored: Stored): RevocationList {
    const key = JSON.stringify(stored.feed);
    if (this.list && this.listFeed === key) return this.list;
    const secret = this.env[stored.feed.secretEnv];
    if (typeof secret !== 'string' || secret === '') throw new Error(`the binding ${stored.feed.secretEnv} (token.revocation_list.client_secret_env) is not set`);
    const options: RevocationListOptions = { endpoint: stored.feed.endpoint, issuer: stored.feed.issuer, clientId: stored.feed.clientId, clientSecret: secret, pollMs: stored.feed.pollMs };
    const list = new RevocationList(options);
    if (stored.snapshot) list.restore(stored.snapshot);
    this.list = list;
    this.listFeed = key;
    return list;
  }

  /** Polls (joining a poll running), stores the list, bumps the version when it changed. */
  private poll(stored: Stored): Promise<boolean> {
    this.polling ??= this.pollOnce(stored).finally(() => (this.polling = undefined));
    return this.polling.then((ok) => {
      // A joined poll stored its own copy of the record: read it back.
      return this.storage.get<Stored>('feed').then((current) => {
        if (current) Object.assign(stored, current);
        return ok;
      });
    });
  }

  private async pollOnce(stored: Stored): Promise<boolean> {
    const list = this.listFor(stored);
    stored.polledAt = Date.now();
    await this.storage.put('feed', stored);
    await list.refresh();
    const snapshot = list.snapshot();
    // The stored record may have been written by a read meanwhile: keep its readAt.
    const current = (await this.storage.get<Stored>('feed')) ?? stored;
    if (!current.snapshot || contents(current.snapshot) !== contents(snapshot)) current.version++;
    current.snapshot = snapshot;
    current.polledAt = stored.polledAt;
    const ok = snapshot.lastError === undefined;
    if (ok) current.idle = false;
    await this.storage.put('feed', current);
    Object.assign(stored, current);
    return ok;
  }

  async read(command: RevocationsCommand): Promise<Response> {
    const feed = command.feed;
    if (typeof feed?.endpoint !== 'string' || typeof feed.clientId !== 'string' || typeof feed.secretEnv !== 'string' || !(feed.pollMs > 0)) return new Response('bad request', { status: 400 });
    let stored = await this.storage.get<Stored>('feed');
    const now = Date.now();
    if (!stored) await this.storage.put('kind', 'revocations');
    // Written when something changed, or once a minute for `readAt` (idling is counted in minutes):
    // not on every read, each a billed write.
    if (!stored || !sameFeed(stored.feed, feed) || JSON.stringify(stored.feed) !== JSON.stringify(feed) || now - stored.readAt >= READ_MARK_MS) {
      if (!stored || !sameFeed(stored.feed, feed)) stored = { feed, version: (stored?.version ?? 0) + 1, readAt: 0 };
      stored.feed = feed;
      stored.readAt = now;
      await this.storage.put('feed', stored);
    }
    try {
      this.listFor(stored);
    } catch (error) {
      return Response.json({ error: (error as Error).message }, { status: 500 });
    }
    let stale: string | undefined;
    if (stored.idle) {
      const since = stored.polledAt;
      if (!(await this.poll(stored))) stale = `the revocation list was not polled for ${Math.round((now - (since ?? now)) / 1000)} s (no reads) and the catch-up poll failed: ${stored.snapshot?.lastError}`;
    } else if (!stored.snapshot?.loaded && (this.polling || stored.polledAt === undefined || now - stored.polledAt >= Math.min(UNLOADED_RETRY_MS, feed.pollMs))) {
      // No list yet: poll (or wait for the poll running) before answering.
      await this.poll(stored);
    }
    if (!stale && (await this.storage.getAlarm()) === null) await this.storage.setAlarm((stored.polledAt ?? now) + feed.pollMs);
    if (stale) return Response.json({ version: -1, snapshot: { loaded: false, tokens: [], grants: [], clients: [], lastError: stale } } satisfies RevocationsAnswer);
    const snapshot = stored.snapshot ?? { loaded: false, tokens: [], grants: [], clients: [] };
    return Response.json(command.known === stored.version ? { version: stored.version } : ({ version: stored.version, snapshot } satisfies RevocationsAnswer));
  }

  /** The alarm: poll when due, then wake at the next interval; stop when nobody read the list for `idleMs`. */
  async alarm(): Promise<void> {
    const stored = await this.storage.get<Stored>('feed');
    if (!stored) return;
    const now = Date.now();
    if (now - stored.readAt >= this.idleMs(stored.feed.pollMs)) {
      stored.idle = true;
      await this.storage.put('feed', stored);
      return;
    }
    if (stored.polledAt === undefined || now - stored.polledAt >= stored.feed.pollMs) {
      try {
        await this.poll(stored);
      } catch (error) {
        // The secret's binding is gone: nothing to poll with; the next read says why.
        console.warn(JSON.stringify({ level: 'warn', msg: 'cannot poll the revocation list', reason: (error as Error).message }));
      }
    }
    await this.storage.setAlarm((stored.polledAt ?? now) + stored.feed.pollMs);
  }
}

/**
 * The isolate's side: a `RevocationList` whose list is the object's. Its copy is used for
 * `ISOLATE_LIST_MS`, then read again (only the version when unchanged); the routes await
 * `verdictFor`, which reads first when the copy is too old. It never polls the AS itself.
 */
export class DurableRevocationList extends RevocationList {
  private readAt = Number.NEGATIVE_INFINITY;
  private version: number | undefined;
  private failure: string | undefined;
  /** The read under way and when it began: one pending past STALE_READ_MS is abandoned, never joined. */
  private reading: { promise: Promise<void>; startedAt: number } | undefined;
  private readonly name: string;

  constructor(
    private readonly namespace: DurableNamespace,
    private readonly feed: FeedConfig,
    options: RevocationListOptions,
  ) {
    super(options);
    this.name = `revocations:${feed.endpoint} ${feed.clientId}`;
  }

  override start(): void {}
  override stop(): void {}

  /**
   * Reads the list from the object (joining a read already running, unless it began STALE_READ_MS
   * ago: in workerd a read begun by a request that has answered may be cancelled and never settle).
   */
  override refresh(): Promise<void> {
    const now = Date.now();
    if (!this.reading || now - this.reading.startedAt >= STALE_READ_MS) {
      const reading = { startedAt: now, promise: Promise.resolve() };
      reading.promise = this.read().finally(() => {
        if (this.reading === reading) this.reading = undefined;
      });
      this.reading = reading;
    }
    return this.reading.promise;
  }

  private async read(): Promise<void> {
    try {
      const answer = (await callState(this.namespace, this.name, { op: 'revocations', feed: this.feed, known: this.version } satisfies RevocationsCommand)) as RevocationsAnswer;
      if (answer.snapshot) this.restore(answer.snapshot);
      this.version = answer.version;
      this.failure = undefined;
      this.readAt = Date.now();
    } catch (error) {
      this.failure = `the revocation list's Durable Object cannot be read: ${(error as Error)?.message ?? String(error)}`;
    }
  }

  override async verdictFor(claims: TokenClaims): Promise<RevocationVerdict> {
    if (Date.now() - this.readAt >= ISOLATE_LIST_MS) await this.refresh();
    // Fail closed: no list younger than ISOLATE_LIST_MS, and the object cannot say.
    if (this.failure !== undefined && Date.now() - this.readAt >= ISOLATE_LIST_MS) return { refuse: 'unavailable', reason: this.failure };
    return this.check(claims);
  }
}

/** The route config's parts used here (`token.revocation_list`, `issuers[].revocation_list`). */
interface RouteFeedConfig {
  mode: string;
  revocation_list?: { client_id: string; client_secret_env: string };
}
interface RouteWithFeed {
  token?: RouteFeedConfig;
  issuers?: RouteFeedConfig[];
}

/**
 * `CompileOptions.acquireRevocations` for a Worker with `GATEWAY_STATE`: each route's list is read
 * from its feed's object. The binding that holds the secret is found from the routes' config (the
 * route compiler hands over the secret's value, which is never sent to the object).
 */
export function durableRevocations(namespace: DurableNamespace, routes: readonly unknown[], env: Record<string, unknown>) {
  return (options: RevocationListOptions): { list: RevocationList; release(): void } => {
    const feeds = (routes as RouteWithFeed[]).flatMap((route) => [route.token, ...(route.issuers ?? [])]);
    const named = feeds.find((config) => {
      const feed = config?.mode === 'jwt' ? config.revocation_list : undefined;
      return feed?.client_id === options.clientId && env[feed.client_secret_env] === options.clientSecret;
    });
    const secretEnv = named?.revocation_list?.client_secret_env;
    if (!secretEnv) throw new Error(`no route names the secret of the revocation list client ${options.clientId}`);
    const endpoint = typeof options.endpoint === 'string' ? options.endpoint : undefined;
    if (!endpoint) throw new Error('the revocation list endpoint must be known when the route is built');
    const list = new DurableRevocationList(namespace, { endpoint, issuer: options.issuer, clientId: options.clientId, secretEnv, pollMs: options.pollMs }, options);
    return { list, release: () => undefined };
  };
}
