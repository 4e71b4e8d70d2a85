import { createHash, randomBytes } from 'node:crypto';

/**
 * The "native app" side of the handoff example (docs/browser-sessions.md, "App-to-web session
 * transfer"). An app that holds its user's access token pushes it over the back channel, through
 * the session transfer client, to the authorization server's /par, and gets a single-use
 * request_uri; it then opens the browser (a web view) at /authorize with that request_uri alone.
 * The token never travels in a URL. The PKCE verifier is thrown away at once: this flow never
 * ends in a code.
 *
 * @example
 * const { url } = await pushSessionTransfer({ issuer: 'http://localhost:9000', clientId: 'session-transfer', accessToken, returnTo: 'http://localhost:8080/app/' });
 * // open `url` in the browser, from the same network address
 */
export interface SessionTransferPush {
  issuer: string;
  /** The session transfer client (a public client in the demo). */
  clientId: string;
  /** Only when the transfer client is confidential (client_secret_basic). */
  clientSecret?: string;
  /** The user's access token, issued to one of the transfer client's subject clients. */
  accessToken: string;
  /** Where the browser goes once signed in: one of the client's allowed_return_urls. */
  returnTo: string;
}

export async function pushSessionTransfer(push: SessionTransferPush): Promise<{ url: string; requestUri: string; expiresIn: number }> {
  const issuer = push.issuer.replace(/\/$/, '');
  const metadata = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as { pushed_authorization_request_endpoint?: string; authorization_endpoint: string };
  if (!metadata.pushed_authorization_request_endpoint) throw new Error(`${issuer} offers no pushed authorization requests`);
  // RFC 7636 S256 challenge of a verifier nobody keeps: the request can never be redeemed.
  const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (push.clientSecret) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(push.clientId)}:${encodeURIComponent(push.clientSecret)}`).toString('base64')}`;
  const res = await fetch(metadata.pushed_authorization_request_endpoint, {
    method: 'POST',
    headers,
    body: new URLSearchParams({
      client_id: push.clientId,
      response_type: 'code',
      scope: 'session_transfer',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      subject_token: push.accessToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      return_to: push.returnTo,
    }),
  });
  const body = (await res.json()) as { request_uri?: string; expires_in?: number; error?: string; error_description?: string };
  if (res.status !== 201 || !body.request_uri) throw new Error(`the push was refused: ${res.status} ${body.error ?? ''} ${body.error_description ?? ''}`.trim());
  const url = new URL(metadata.authorization_endpoint);
  url.search = new URLSearchParams({ client_id: push.clientId, request_uri: body.request_uri }).toString();
  return { url: url.href, requestUri: body.request_uri, expiresIn: body.expires_in ?? 0 };
}

// Run directly (the README walkthrough):
//   APP_ACCESS_TOKEN=<the app's access token> node --import tsx examples/handoff/native-app.ts [return_to] [issuer] [client_id]
if (import.meta.url === `file://${process.argv[1]}`) {
  const [returnTo = 'http://localhost:8080/app/', issuer = 'http://localhost:9000', clientId = 'session-transfer'] = process.argv.slice(2);
  const accessToken = process.env.APP_ACCESS_TOKEN;
  if (!accessToken) {
    process.stderr.write('native-app: set APP_ACCESS_TOKEN to the app user\'s access token\n');
    process.exit(2);
  }
  try {
    const { url, expiresIn } = await pushSessionTransfer({ issuer, clientId, accessToken, returnTo, clientSecret: process.env.TRANSFER_CLIENT_SECRET });
    process.stdout.write(`Open within ${expiresIn} s, from this machine's address, once:\n${url}\n`);
  } catch (error) {
    process.stderr.write(`native-app: ${(error as Error).message}\n`);
    process.exit(1);
  }
}
