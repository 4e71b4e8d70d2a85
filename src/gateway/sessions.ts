/**
 * Binds MCP sessions (2025-11-25 `Mcp-Session-Id`) to the caller who opened them. The upstream has
 * no auth of its own and trusts any request carrying a live session id, so without this a caller
 * who learns another user's session id could ride it with a token of their own (MCP security best
 * practices, "session hijacking"). A session id bound nowhere is refused too: it is either ended,
 * expired, or opened through a gateway that does not share its bindings, and the upstream could
 * still hold it for someone else.
 */
export interface SessionOwner {
  sub: string;
  clientId?: string;
}

/** `own`: the caller's; `unknown`: bound nowhere; otherwise who differs. */
export type SessionVerdict = 'own' | 'unknown' | 'other_subject' | 'other_client';

export interface SessionStore {
  /** Binds a session the upstream just gave out; a session already bound keeps its first owner. */
  bind(sessionId: string, owner: SessionOwner): void | Promise<void>;
  /** Whose the session is; refreshes its idle lifetime. */
  check(sessionId: string, owner: SessionOwner): SessionVerdict | Promise<SessionVerdict>;
  /** Forgets a session the upstream has ended (DELETE), with its upstream sessions. */
  end(sessionId: string): void | Promise<void>;
  /**
   * A route with several upstreams (src/gateway/mux/): the gateway's session id is the client's,
   * and each upstream's own session id (empty for an upstream without sessions) is kept under it,
   * with the binding, so any gateway instance can serve the session. Set once, when the gateway's
   * session opens, before its id is handed out; it lives as long as the binding (whatever renews
   * one renews the other, and `end` forgets both). Throws `SessionStoreUnavailable` when the
   * binding is gone: a session whose upstream sessions are not kept must not be handed out.
   */
  setUpstreams?(sessionId: string, upstreams: UpstreamSessions): void | Promise<void>;
  upstreams?(sessionId: string): UpstreamSessions | undefined | Promise<UpstreamSessions | undefined>;
}

/** Each upstream's `Mcp-Session-Id` (empty: it has none) and the protocol revision it answered `initialize` with, by upstream name, for one gateway session. */
export type UpstreamSessions = Record<string, { session: string; protocol?: string }>;

/** Thrown when the shared store cannot answer: the gateway then refuses (503), never guesses. */
export class SessionStoreUnavailable extends Error {
  constructor(cause: unknown) {
    super(`session store unavailable: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'SessionStoreUnavailable';
  }
}

/** 24 hours: a session idle for longer is forgotten, and its id is then refused (404). */
export const DEFAULT_SESSION_IDLE_SECONDS = 86_400;

export function sessionVerdict(stored: SessionOwner, caller: SessionOwner): SessionVerdict {
  if (stored.sub !== caller.sub) return 'other_subject';
  return (stored.clientId ?? null) === (caller.clientId ?? null) ? 'own' : 'other_client';
}

/** One process's bindings: a gateway without REDIS_URL. Bounded; idle bindings are forgotten. */
export class SessionBindings implements SessionStore {
  private readonly owners = new Map<string, { owner: SessionOwner; seen: number; upstreams?: UpstreamSessions }>();

  constructor(private readonly options: { maxEntries?: number; idleMs?: number } = {}) {}

  private live(sessionId: string) {
    const entry = this.owners.get(sessionId);
    if (entry && Date.now() - entry.seen > (this.options.idleMs ?? DEFAULT_SESSION_IDLE_SECONDS * 1000)) {
      this.owners.delete(sessionId);
      return undefined;
    }
    return entry;
  }

  bind(sessionId: string, owner: SessionOwner): void {
    const entry = this.live(sessionId);
    if (entry) {
      if (sessionVerdict(entry.owner, owner) === 'own') entry.seen = Date.now();
      return;
    }
    if (this.owners.size >= (this.options.maxEntries ?? 100_000)) this.owners.delete(this.owners.keys().next().value as string);
    this.owners.set(sessionId, { owner: { sub: owner.sub, clientId: owner.clientId }, seen: Date.now() });
  }

  check(sessionId: string, owner: SessionOwner): SessionVerdict {
    const entry = this.live(sessionId);
    if (!entry) return 'unknown';
    entry.seen = Date.now();
    return sessionVerdict(entry.owner, owner);
  }

  end(sessionId: string): void {
    this.owners.delete(sessionId);
  }

  setUpstreams(sessionId: string, upstreams: UpstreamSessions): void {
    const entry = this.live(sessionId);
    // Bound a moment ago, but a full store may have dropped it since.
    if (!entry) throw new SessionStoreUnavailable(new Error('the session binding is gone'));
    entry.upstreams = { ...upstreams };
  }

  upstreams(sessionId: string): UpstreamSessions | undefined {
    const entry = this.live(sessionId);
    if (!entry) return undefined;
    entry.seen = Date.now();
    return entry.upstreams;
  }
}
