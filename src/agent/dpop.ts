import { exportJWK, importJWK, type JWK } from 'jose';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../core/dpop.ts';

/** The agent's DPoP choice: `auto` = when the AS lists ES256 in `dpop_signing_alg_values_supported`. */
export type DpopSetting = 'auto' | 'always' | 'never';

/** The private JWK of a proof key as kept in the credentials file (0600). */
export type StoredDpopKey = JWK;

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

/**
 * The agent's proof key for one registration (issuer + client id) and the nonces servers gave it
 * (RFC 9449 §8, §9: per origin — the AS and the MCP server each keep their own).
 */
export class AgentDpop {
  private readonly nonces = new Map<string, string>();

  private constructor(readonly key: DpopKey) {}

  static async generate(): Promise<{ signer: AgentDpop; stored: StoredDpopKey }> {
    const key = await generateDpopKey('ES256');
    return { signer: new AgentDpop(key), stored: { ...(await exportJWK(key.privateKey)), alg: 'ES256' } };
  }

  static async load(stored: StoredDpopKey): Promise<AgentDpop> {
    const alg = stored.alg ?? 'ES256';
    const privateKey = (await importJWK(stored, alg)) as CryptoKey;
    const publicJwk = Object.fromEntries(Object.entries(stored).filter(([name]) => !PRIVATE_MEMBERS.includes(name) && name !== 'key_ops' && name !== 'ext')) as JWK;
    return new AgentDpop({ privateKey, publicJwk, alg });
  }

  /** RFC 7638 thumbprint: the `dpop_jkt` of an authorization request, the token's `cnf.jkt`. */
  thumbprint(): Promise<string> {
    return jwkThumbprint(this.key.publicJwk);
  }

  /** A proof for one request: a new `jti` each time, the origin's last nonce, `ath` with a token. */
  proof(htm: string, htu: string, extra: { accessToken?: string; body?: Uint8Array } = {}): Promise<string> {
    const nonce = this.nonces.get(new URL(htu).origin);
    return createDpopProof(this.key, { htm, htu, ...extra, ...(nonce !== undefined ? { nonce } : {}) });
  }

  /** Keeps the nonce a response carries (`DPoP-Nonce`, on errors and successes alike, §8.2). */
  remember(url: string, nonce: string | null): void {
    if (nonce && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(nonce)) this.nonces.set(new URL(url).origin, nonce);
  }
}
