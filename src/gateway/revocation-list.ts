import type { TokenClaims } from './token-validator.ts';
import { actorChain } from '../core/delegation.ts';
import { basicAuthorization } from '../core/encoding.ts';
import type { ListedClient, RevocationEvent } from '../store/revocation-channel.ts';

export interface RevocationListOptions {
  endpoint: string | (() => Promise<string>);
  clientId: string;
  clientSecret: string;
  pollMs: number;
  /** The issuer whose pushed events apply (a channel may carry several). */
  issuer?: string;
  fetch?: typeof fetch;
  onError?: (error: Error) => void;
  /**
   * Polled on use, never on a timer (Workers: a timer set during a request never fires after it,
   * and work a request leaves running is cancelled when it answers): `verdictFor` waits for the
   * first poll (while none succeeds, at most one poll a second; checks meanwhile join it or get
   * `unavailable`), and later starts a poll — under the request's `waitUntil` — when the last one
   * began `pollMs` ago or more. `start()` is then never needed. No I/O at a Worker's global scope.
   */
  startOnUse?: boolean;
}

/** What a request lends the list: Workers' `ctx.waitUntil`, so that a poll it starts runs to its end. */
export interface PollContext {
  waitUntil?(promise: Promise<unknown>): void;
}

/** A poll is aborted after this long (AbortSignal.timeout). */
const POLL_TIMEOUT_MS = 5_000;
/**
 * A poll still pending after this long is abandoned and another one started, never joined: in
 * workerd, work a request left running when it answered is cancelled and never settles.
 */
const STALE_POLL_MS = POLL_TIMEOUT_MS + 1_000;
/** On use, while no list is loaded, a check starts a poll at most this often. */
const UNLOADED_RETRY_MS = 1_000;

/** What the list says about a token: nothing (let it through), refuse it, or cannot tell yet. */
export type RevocationVerdict = { refuse: 'revoked'; reason: string } | { refuse: 'unavailable'; reason: string } | undefined;

/**
 * A list as loaded so far, in a form that can be stored and sent (the edge's `revocations:` Durable
 * Object keeps it in its storage and hands it to the isolates): what `snapshot()` gives and
 * `restore()` takes. The poll's cursor (`since`, `etag`) is in it, so a restored list goes on
 * polling incrementally.
 */
export interface RevocationSnapshot {
  loaded: boolean;
  tokens: [string, number][];
  grants: [string, number][];
  clients: ListedClient[];
  since?: number;
  etag?: string;
  lastError?: string;
}

interface ListAnswer {
  next_since?: number;
  tokens?: { jti: string; exp?: number }[];
  grants?: { grant_id: string; until?: number }[];
  clients?: ListedClient[];
}

/**
 * Mandate's revocation list (`/revocations`), so that locally verified JWTs stop working when
 * they are revoked, their grant is revoked (`grant_id`), or their client or any actor in their
 * `act` chain is disabled, expired or cut off — without a call per request.
 *
 * Fails closed: until the first list is loaded every token gets `unavailable` (the caller answers
 * 503). Polls incrementally (`since` + `If-None-Match`); pushed events (`apply`, Redis pub/sub)
 * take effect at once between polls. If a poll fails, the last list stays in force and the error
 * is reported.
 */
export class RevocationList {
  private jtis = new Map<string, number>();
  private grants = new Map<string, number>();
  private clients = new Map<string, ListedClient>();
  private since: number | undefined;
  private etag: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  /** The poll under way, and when it began (a stale one is abandoned: STALE_POLL_MS). */
  private inflight: { promise: Promise<void>; startedAt: number } | undefined;
  /** Bumped by each poll: an abandoned poll that settles after all changes nothing. */
  private generation = 0;
  /** When the last poll began (epoch ms). */
  private lastPollAt = 0;
  private readonly basic: string;
  loaded = false;
  /** Why the last poll failed, for the refusal's audit reason while nothing is loaded. */
  private lastError: string | undefined;
  /**
   * Client events pushed while a poll is in flight: the poll's answer may have been read before
   * them, so they are applied again over it (in order, the last being the newest state).
   */
  private pushedDuringPoll: ListedClient[] | undefined;

  constructor(private readonly options: RevocationListOptions) {
    this.basic = basicAuthorization(options.clientId, options.clientSecret);
  }

  /** Polls now (joining a poll already running, unless it began STALE_POLL_MS ago or more: then a new one). */
  refresh(): Promise<void> {
    const now = Date.now();
    if (!this.inflight || now - this.inflight.startedAt >= STALE_POLL_MS) {
      this.pushedDuringPoll = [];
      this.lastPollAt = now;
      const generation = ++this.generation;
      const inflight = { promise: Promise.resolve(), startedAt: now };
      inflight.promise = this.poll(generation).finally(() => {
        if (this.inflight !== inflight) return;
        this.inflight = undefined;
        this.pushedDuringPoll = undefined;
      });
      this.inflight = inflight;
    }
    return this.inflight.promise;
  }

  private async poll(generation: number): Promise<void> {
    const current = () => generation === this.generation;
    try {
      const base = typeof this.options.endpoint === 'string' ? this.options.endpoint : await this.options.endpoint();
      const url = new URL(base);
      if (this.since !== undefined) url.searchParams.set('since', String(this.since));
      const headers: Record<string, string> = { authorization: this.basic, accept: 'application/json' };
      if (this.etag && this.since !== undefined) headers['if-none-match'] = this.etag;
      const response = await (this.options.fetch ?? fetch)(url, { headers, signal: AbortSignal.timeout(POLL_TIMEOUT_MS) });
      if (response.status === 304) return;
      if (!response.ok) throw new Error(`revocation list ${base} answered ${response.status}`);
      const body = (await response.json()) as ListAnswer;
      // Abandoned meanwhile: a newer poll decides (revocations it carried are read again from `since`).
      if (!current()) return;
      // Revocations are never undone: every answer, full or incremental, only adds.
      for (const token of body.tokens ?? []) this.jtis.set(token.jti, token.exp ?? Number.MAX_SAFE_INTEGER);
      for (const grant of body.grants ?? []) this.grants.set(grant.grant_id, grant.until ?? Number.MAX_SAFE_INTEGER);
      this.clients = new Map((body.clients ?? []).map((client) => [client.client_id, client]));
      for (const client of this.pushedDuringPoll ?? []) this.clients.set(client.client_id, client);
      // An AS without incremental answers (no next_since) gets a full read every time.
      this.since = typeof body.next_since === 'number' ? body.next_since : undefined;
      this.etag = response.headers.get('etag') ?? undefined;
      this.prune();
      this.loaded = true;
      this.lastError = undefined;
    } catch (error) {
      if (!current()) return;
      this.lastError = (error as Error).message;
      this.options.onError?.(error as Error);
    }
  }

  /** The list as loaded so far (expired entries pruned), to store or to send. */
  snapshot(): RevocationSnapshot {
    this.prune();
    return {
      loaded: this.loaded,
      tokens: [...this.jtis],
      grants: [...this.grants],
      clients: [...this.clients.values()],
      ...(this.since !== undefined ? { since: this.since } : {}),
      ...(this.etag !== undefined ? { etag: this.etag } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  /** Replaces the list with a snapshot (from storage, or from the object that polls for this one). */
  restore(snapshot: RevocationSnapshot): void {
    this.jtis = new Map(snapshot.tokens);
    this.grants = new Map(snapshot.grants);
    this.clients = new Map(snapshot.clients.map((client) => [client.client_id, client]));
    this.since = snapshot.since;
    this.etag = snapshot.etag;
    this.loaded = snapshot.loaded;
    this.lastError = snapshot.lastError;
    this.prune();
  }

  /** A pushed event (Redis pub/sub): in force at once, until the next poll confirms it. */
  apply(event: RevocationEvent): void {
    if (this.options.issuer !== undefined && event.iss.replace(/\/$/, '') !== this.options.issuer.replace(/\/$/, '')) return;
    if (event.type === 'token') this.jtis.set(event.jti, event.exp);
    else if (event.type === 'grant') this.grants.set(event.grant_id, event.until);
    else {
      this.clients.set(event.client.client_id, event.client);
      this.pushedDuringPoll?.push(event.client);
    }
  }

  private prune(): void {
    const now = Math.floor(Date.now() / 1000);
    for (const [jti, exp] of this.jtis) if (exp < now) this.jtis.delete(jti);
    for (const [id, until] of this.grants) if (until < now) this.grants.delete(id);
  }

  start(): void {
    void this.refresh();
    this.timer ??= setInterval(() => void this.refresh(), this.options.pollMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Whether the token may be used, as far as revocation goes (by the list as loaded so far; polls nothing). */
  check(claims: TokenClaims): RevocationVerdict {
    if (!this.loaded) {
      // A wrong secret or a client that serves no resource fails every poll: say so, not just "not yet".
      return { refuse: 'unavailable', reason: `the revocation list has not been loaded yet${this.lastError ? ` (last poll: ${this.lastError})` : ''}` };
    }
    const reason = this.reason(claims);
    return reason ? { refuse: 'revoked', reason } : undefined;
  }

  /**
   * `check`, for a list that may have to be read first: the gateway's protection filter awaits
   * this. On a timer (`start()`) it is `check` itself; polled on use (`startOnUse`), it polls first
   * when due (see `startOnUse`); the edge's list kept by a Durable Object
   * (`workers/durable-revocations.ts`) reads the object's list when its own copy is too old.
   */
  verdictFor(claims: TokenClaims, context?: PollContext): RevocationVerdict | Promise<RevocationVerdict> {
    if (!this.options.startOnUse || this.stopped) return this.check(claims);
    const due = this.pollOnUse(context);
    return due ? due.then(() => this.check(claims)) : this.check(claims);
  }

  /** On use: the poll to wait for (no list yet), else undefined — a due poll is started in the background. */
  private pollOnUse(context?: PollContext): Promise<void> | undefined {
    const now = Date.now();
    if (!this.loaded) {
      const running = this.inflight && now - this.inflight.startedAt < STALE_POLL_MS;
      if (!running && now - this.lastPollAt < UNLOADED_RETRY_MS) return undefined;
      const poll = this.refresh();
      context?.waitUntil?.(poll);
      return poll;
    }
    if (now - this.lastPollAt >= this.options.pollMs) {
      const poll = this.refresh();
      context?.waitUntil?.(poll);
    }
    return undefined;
  }

  /** Why the token must be refused, or undefined (by the list as loaded so far). */
  reason(claims: TokenClaims): string | undefined {
    if (typeof claims.jti === 'string' && this.jtis.has(claims.jti)) return 'the token was revoked';
    if (typeof claims.grant_id === 'string' && this.grants.has(claims.grant_id)) return 'the grant of the token was revoked';
    // Usually no client is restricted: then there is no chain to walk.
    if (this.clients.size === 0) return undefined;
    const parties = [claims.client_id, ...actorChain(claims.act).flatMap((actor) => [actor.sub, actor.client_id])].filter((id): id is string => typeof id === 'string');
    const now = Math.floor(Date.now() / 1000);
    for (const id of new Set(parties)) {
      const client = this.clients.get(id);
      if (!client) continue;
      if (client.disabled_at !== null) return `client ${id} is disabled`;
      if (client.expired_at !== null && client.expired_at <= now) return `client ${id} has expired`;
      if (client.tokens_valid_after !== null && typeof claims.iat === 'number' && claims.iat <= client.tokens_valid_after) return `tokens of ${id} issued before ${client.tokens_valid_after} are cut off`;
    }
    return undefined;
  }
}
