import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentError, fromOAuthError, networkReason } from './errors.ts';

export interface ClientCredentials {
  clientId: string;
  clientSecret?: string;
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  issued_token_type?: string;
}

/** A POST to the token endpoint with client_secret_basic (or the client id alone for a public client). */
export async function tokenRequest(endpoint: string, form: Record<string, string>, client: ClientCredentials, what: string): Promise<TokenResponse> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  const body = new URLSearchParams(form);
  if (client.clientSecret) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64')}`;
  else body.set('client_id', client.clientId);
  let response: Response;
  try {
    response = await fetch(endpoint, { method: 'POST', headers, body, signal: AbortSignal.timeout(15_000) });
  } catch (error) {
    throw new AgentError('unreachable', `cannot reach the authorization server at ${endpoint} (${networkReason(error)}) — is it running?`);
  }
  const json = (await response.json().catch(() => ({}))) as TokenResponse & { error?: string; error_description?: string };
  if (!response.ok || typeof json.access_token !== 'string') throw fromOAuthError(json.error, json.error_description, what);
  return json;
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface LoopbackSignIn {
  /** The redirect URI to send in the authorization request (its port is the real one). */
  redirectUri: string;
  /** Resolves with the authorization response's parameters once the browser comes back. */
  result: Promise<URLSearchParams>;
  close(): void;
}

const PAGE = (title: string, text: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body style="font-family:system-ui;margin:3rem"><h1>${title}</h1><p>${text}</p></body></html>`;

/**
 * The redirect URI of a native app (RFC 8252 §7.3): a one-shot HTTP server on the loopback
 * interface. Port 0 picks a free one (the AS lets loopback redirect ports vary).
 */
export async function startLoopbackSignIn(options: { port: number; path?: string; timeoutMs?: number }): Promise<LoopbackSignIn> {
  const path = options.path ?? '/callback';
  let settle!: (params: URLSearchParams) => void;
  let fail!: (error: Error) => void;
  const result = new Promise<URLSearchParams>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path) {
      res.writeHead(404).end();
      return;
    }
    const error = url.searchParams.get('error');
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(error ? PAGE('Sign-in not completed', 'The agent was not authorized. You can close this tab.') : PAGE('Signed in', 'The agent has what it needs. You can close this tab and return to the terminal.'));
    settle(url.searchParams);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new AgentError('usage', `port ${options.port} is in use: pass --callback-port 0 (any free port) or free it`) : error),
    );
    server.listen(options.port, '127.0.0.1', () => resolve());
  });
  const timer = setTimeout(() => fail(new AgentError('consent_denied', 'no sign-in within the time allowed')), options.timeoutMs ?? 300_000);
  const close = () => {
    clearTimeout(timer);
    server.close();
    server.closeAllConnections();
  };
  void result.finally(close).catch(() => undefined);
  return { redirectUri: `http://localhost:${(server.address() as AddressInfo).port}${path}`, result, close };
}
