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
   * Begin polling at the first check rather than when `start()` is called: no I/O or timer at a
   * Worker's global scope. That first check (and those before the first answer) says
   * `unavailable`, as every check does until a list is loaded.
   */
  startOnUse?: boolean;
}

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
  private inflight: Promise<void> | undefined;
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

  /** Polls now (joining a poll already running). */
  refresh(): Promise<void> {
    if (!this.inflight) {
      this.pushedDuringPoll = [];
      this.inflight = this.poll().finally(() => {
        this.inflight = undefined;
        this.pushedDuringPoll = undefined;
      });
    }
    return this.inflight;
  }

  private async poll(): Promise<void> {
    try {
      const base = typeof this.options.endpoint === 'string' ? this.options.endpoint : await this.options.endpoint();
      const url = new URL(base);
      if (this.since !== undefined) url.searchParams.set('since', String(this.since));
      const headers: Record<string, string> = { authorization: this.basic, accept: 'application/json' };
      if (this.etag && this.since !== undefined) headers['if-none-match'] = this.etag;
      const response = await (this.options.fetch ?? fetch)(url, { headers, signal: AbortSignal.timeout(5_000) });
      if (response.status === 304) return;
      if (!response.ok) throw new Error(`revocation list ${base} answered ${response.status}`);
      const body = (await response.json()) as ListAnswer;
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

  /** Whether the token may be used, as far as revocation goes. */
  check(claims: TokenClaims): RevocationVerdict {
    if (this.options.startOnUse && !this.timer && !this.stopped) this.start();
    if (!this.loaded) {
      // A wrong secret or a client that serves no resource fails every poll: say so, not just "not yet".
      return { refuse: 'unavailable', reason: `the revocation list has not been loaded yet${this.lastError ? ` (last poll: ${this.lastError})` : ''}` };
    }
    const reason = this.reason(claims);
    return reason ? { refuse: 'revoked', reason } : undefined;
  }

  /**
   * `check`, for a list that may have to be read first: the gateway's protection filter awaits
   * this. Here the list is in this process and it is `check` itself; the edge's list kept by a
   * Durable Object (`workers/durable-revocations.ts`) reads the object's list when its own copy is
   * too old.
   */
  verdictFor(claims: TokenClaims): RevocationVerdict | Promise<RevocationVerdict> {
    return this.check(claims);
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
