import { Redis } from 'ioredis';

/**
 * The revocation feed's push half (REDIS_URL): every authorization server instance publishes on
 * one channel what it revoked, and every instance, gateway and self-protected resource server
 * subscribes. The polled `/revocations` list stays the source of truth: a subscriber polls once
 * on every (re)connect, so a message lost while it was away is caught up.
 *
 * One JSON message per event, always naming the issuer (a channel may carry several):
 * - `{"iss", "type": "token", "jti", "exp", "revoked_at"}` — an access token revoked (RFC 7009)
 * - `{"iss", "type": "grant", "grant_id", "revoked_at", "until"}` — a grant revoked: every token
 *   with that `grant_id` claim is dead (until it could no longer be valid anyway)
 * - `{"iss", "type": "client", "client": {"client_id", "disabled_at", "tokens_valid_after",
 *   "expired_at"}}` — a client or agent disabled, re-enabled, expired, deleted or cut off
 */
export type RevocationEvent =
  | { iss: string; type: 'token'; jti: string; exp: number; revoked_at: number }
  | { iss: string; type: 'grant'; grant_id: string; revoked_at: number; until: number }
  | { iss: string; type: 'client'; client: ListedClient };

export interface ListedClient {
  client_id: string;
  disabled_at: number | null;
  tokens_valid_after: number | null;
  expired_at: number | null;
}

export const DEFAULT_REVOCATION_CHANNEL = 'mandate:revocations';

export function parseRevocationEvent(message: string): RevocationEvent | undefined {
  try {
    const event = JSON.parse(message) as Partial<RevocationEvent> & Record<string, unknown>;
    if (typeof event.iss !== 'string') return undefined;
    if (event.type === 'token' && typeof event.jti === 'string' && typeof event.exp === 'number') return event as RevocationEvent;
    if (event.type === 'grant' && typeof event.grant_id === 'string' && typeof event.until === 'number') return event as RevocationEvent;
    const client = event.client as ListedClient | undefined;
    if (event.type === 'client' && typeof client?.client_id === 'string') return event as RevocationEvent;
  } catch {
    // not ours
  }
  return undefined;
}

export interface RevocationChannel {
  publish(event: RevocationEvent): Promise<void>;
  close(): Promise<void>;
}

/**
 * Publishes and (with `onEvent`) subscribes. `onConnect` runs on every subscription (the first
 * and after each reconnect): the caller re-reads the list there to catch up.
 */
export function revocationChannel(options: {
  url: string;
  channel: string;
  onEvent?: (event: RevocationEvent) => void;
  onConnect?: () => void;
  onError?: (error: Error) => void;
  /** False for a process that only listens (a gateway): it then holds one connection. */
  publishes?: boolean;
}): RevocationChannel {
  const onError = (error: Error) => options.onError?.(error);
  // A publish never holds a request for long while Redis is down: the poll is the fallback.
  let publisher: Redis | undefined;
  const connection = () => {
    if (!publisher) {
      publisher = new Redis(options.url, { maxRetriesPerRequest: 1, connectTimeout: 2_000 });
      publisher.on('error', onError);
    }
    return publisher;
  };
  if (options.publishes !== false) connection();
  let subscriber: Redis | undefined;
  if (options.onEvent) {
    const onEvent = options.onEvent;
    // The channel subscribes on every connection itself ('ready'), its failure handled. ioredis's
    // own re-subscription after a reconnect is a promise nobody awaits: a drop or a close before
    // Redis answers it would reject it unhandled, which ends a Node process.
    subscriber = new Redis(options.url, { maxRetriesPerRequest: null, autoResubscribe: false });
    subscriber.on('error', onError);
    subscriber.on('ready', () => {
      subscriber!.subscribe(options.channel).then(() => options.onConnect?.(), onError);
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== options.channel) return;
      const event = parseRevocationEvent(message);
      if (event) onEvent(event);
    });
  }
  return {
    async publish(event) {
      await connection().publish(options.channel, JSON.stringify(event));
    },
    async close() {
      // Nothing is left to flush (publishes are awaited), and a quit would wait for a Redis that is down.
      publisher?.disconnect();
      subscriber?.disconnect();
    },
  };
}
