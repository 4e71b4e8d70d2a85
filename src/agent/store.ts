import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { StoredDpopKey } from './dpop.ts';
import type { RegisteredClient } from './registration.ts';

export interface StoredTokens {
  access_token: string;
  refresh_token?: string;
  /** Epoch seconds. */
  expires_at: number;
  scope: string;
  /** The client the tokens were issued to (refresh, exchange and revocation need the same one). */
  client_id?: string;
  /**
   * `delegated`: the person's token is for the agent and is exchanged for the MCP server's (`act` =
   * the agent). `direct`: the person's token is for the MCP server itself (a public client).
   */
  mode?: 'delegated' | 'direct';
  /** `DPoP` when the access token is bound to the registration's proof key (RFC 9449 §5). */
  token_type?: string;
  /**
   * Who signed in, from the ID token of the sign-in (OpenID Connect `openid profile`), for showing
   * the person by name rather than by subject identifier. Shown, never trusted.
   */
  user?: SignedInUser;
}

export interface SignedInUser {
  sub: string;
  preferred_username?: string;
  name?: string;
}

export interface IssuerCredentials {
  /**
   * A client this SDK registered at the issuer (or named by its metadata document), reused by
   * later runs given no client id. A pre-registered agent's secret is never stored: it comes from
   * AGENT_SECRET.
   */
  registered?: RegisteredClient;
  /** The person's sign-in through the agent (the subject token), per MCP URL. */
  subject?: Record<string, StoredTokens>;
  /** DPoP proof keys (private JWKs), one per client id at this issuer: never exported elsewhere. */
  dpop_keys?: Record<string, StoredDpopKey>;
  /** At an enterprise IdP: the person's sign-in there (`mode: 'enterprise'`, `mandate agent login --idp`). */
  idp_sign_in?: IdpSignIn;
}

/** The person's sign-in at an enterprise IdP, kept for the ID-JAG exchanges of later runs. */
export interface IdpSignIn {
  /** The agent's client at the IdP. */
  client_id: string;
  id_token: string;
  /** The ID token's `exp` (epoch seconds). */
  expires_at: number;
  /** Renews the ID token (OIDC Core §12.2) once it has expired. */
  refresh_token?: string;
}

interface StoreFile {
  version: 1;
  issuers: Record<string, IssuerCredentials>;
}

/** `$MANDATE_AGENT_HOME`, or the user's config directory (XDG). */
export function defaultStorePath(env: Record<string, string | undefined> = process.env): string {
  if (env.MANDATE_AGENT_HOME) return join(env.MANDATE_AGENT_HOME, 'credentials.json');
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'mandate', 'credentials.json');
}

/**
 * The agent's credentials, per issuer, in one JSON file readable by the user only (0600, in a
 * 0700 directory). Written atomically (a temporary file, then a rename).
 */
export class CredentialStore {
  constructor(readonly file = defaultStorePath()) {}

  private async read(): Promise<StoreFile> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as StoreFile;
      return parsed.version === 1 && parsed.issuers ? parsed : { version: 1, issuers: {} };
    } catch {
      return { version: 1, issuers: {} };
    }
  }

  async get(issuer: string): Promise<IssuerCredentials | undefined> {
    return (await this.read()).issuers[issuer];
  }

  /** Every stored sign-in for an MCP URL, with its issuer: read locally, no discovery. */
  async signInsFor(mcpUrl: string): Promise<{ issuer: string; credentials: IssuerCredentials; tokens: StoredTokens }[]> {
    return Object.entries((await this.read()).issuers).flatMap(([issuer, credentials]) => {
      const tokens = credentials.subject?.[mcpUrl];
      return tokens ? [{ issuer, credentials, tokens }] : [];
    });
  }

  async update(issuer: string, change: (current: IssuerCredentials | undefined) => IssuerCredentials | undefined): Promise<void> {
    const data = await this.read();
    const next = change(data.issuers[issuer]);
    if (next) data.issuers[issuer] = next;
    else delete data.issuers[issuer];
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const temporary = `${this.file}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, this.file);
  }
}
