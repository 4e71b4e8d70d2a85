import type { TokenClaims } from './token-validator.ts';
import { actorChain } from '../core/delegation.ts';
import { basicAuthorization } from '../core/encoding.ts';

export interface RevocationListOptions {
  endpoint: string | (() => Promise<string>);
  clientId: string;
  clientSecret: string;
  pollMs: number;
  fetch?: typeof fetch;
  onError?: (error: Error) => void;
}

interface ListedClient {
  client_id: string;
  disabled_at: number | null;
  tokens_valid_after: number | null;
  expired_at: number | null;
}

/**
 * Mandate's revocation list (`/revocations`), polled, so that locally verified JWTs stop working
 * when they are revoked, or when their client or any actor in their `act` chain is disabled,
 * expired or cut off — within `pollMs`, without a call per request. If a poll fails, the last list
 * stays in force and the error is reported.
 */
export class RevocationList {
  private jtis = new Set<string>();
  private clients = new Map<string, ListedClient>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly basic: string;
  loaded = false;

  constructor(private readonly options: RevocationListOptions) {
    this.basic = basicAuthorization(options.clientId, options.clientSecret);
  }

  async refresh(): Promise<void> {
    try {
      const endpoint = typeof this.options.endpoint === 'string' ? this.options.endpoint : await this.options.endpoint();
      const response = await (this.options.fetch ?? fetch)(endpoint, { headers: { authorization: this.basic, accept: 'application/json' }, signal: AbortSignal.timeout(5_000) });
      if (!response.ok) throw new Error(`revocation list ${endpoint} answered ${response.status}`);
      const body = (await response.json()) as { tokens?: { jti: string }[]; clients?: ListedClient[] };
      this.jtis = new Set((body.tokens ?? []).map((token) => token.jti));
      this.clients = new Map((body.clients ?? []).map((client) => [client.client_id, client]));
      this.loaded = true;
    } catch (error) {
      this.options.onError?.(error as Error);
    }
  }

  start(): void {
    void this.refresh();
    this.timer ??= setInterval(() => void this.refresh(), this.options.pollMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Why the token must be refused, or undefined. */
  reason(claims: TokenClaims): string | undefined {
    if (typeof claims.jti === 'string' && this.jtis.has(claims.jti)) return 'the token was revoked';
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
