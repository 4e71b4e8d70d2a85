import { parseArgs } from 'node:util';
import { auth, extractWWWAuthenticateParams, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { isJSONRPCRequest, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { startLoopbackSignIn } from '../agent/oauth.ts';

const USAGE = `mandate admin — the admin plane from a terminal (docs/admin.md, docs/admin-mcp.md)

Usage:
  mandate admin mcp [--url <admin MCP URL>] [--callback-port <n>]
  mandate admin token [--scope <scopes>] [--url <admin MCP URL>] [--callback-port <n>]

token: signs the admin in (the sign-in URL on stderr, whose page always asks who signs in; the
client registers itself, PKCE, loopback redirect) and prints an access token for the admin
resource (<issuer>/admin) on stdout, for the admin API and the admin MCP server:
  ADMIN="authorization: Bearer $(mandate admin token --scope admin:write)"
  --scope <scopes>             space-separated (default: what the admin MCP server asks for); a write
                               scope needs the admin's tick on the consent page

mcp: 
relays MCP over stdio to the admin MCP server (Streamable HTTP), as the admin whose token it holds:
  MANDATE_ADMIN_ACCESS_TOKEN   an access token for the admin resource (<issuer>/admin); without it,
                               the admin signs in: the sign-in URL is printed on stderr (the client
                               registers itself, PKCE, loopback redirect)
  --url <url>                  default MANDATE_ADMIN_MCP_URL or http://localhost:9000/admin/mcp
  --callback-port <n>          port of the loopback redirect (default 0: any free port)
`;

/** Keeps the sign-in in memory: this process's tokens die with it (an MCP host starts it again). */
class SignInProvider implements OAuthClientProvider {
  client?: OAuthClientInformationMixed;
  saved?: OAuthTokens;
  verifier?: string;
  constructor(
    readonly redirectUrl: string,
    /** How the consent page names the client: the command that signs in. */
    readonly clientName: string,
  ) {}
  get clientMetadata() {
    return { client_name: this.clientName, redirect_uris: [this.redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  }
  clientInformation = () => this.client;
  saveClientInformation = (info: OAuthClientInformationMixed) => void (this.client = info);
  tokens = () => this.saved;
  saveTokens = (tokens: OAuthTokens) => void (this.saved = tokens);
  redirectToAuthorization = (url: URL) => {
    // Always ask who signs in (OIDC prompt=login): a browser still signed in as someone without an
    // administrative role would otherwise come straight back with invalid_scope, and an admin
    // token is worth the admin's password.
    url.searchParams.set('prompt', 'login');
    process.stderr.write(`mandate admin: sign in as an admin: open\n  ${url.href}\n`);
  };
  saveCodeVerifier = (verifier: string) => void (this.verifier = verifier);
  codeVerifier = () => {
    if (!this.verifier) throw new Error('no code verifier');
    return this.verifier;
  };
}

/**
 * Signs the admin in through the MCP SDK's OAuth flow: discovery from the 401, registration, PKCE.
 * `scopes` replaces the scopes the server's 401 asks for.
 */
async function signIn(serverUrl: URL, port: number, clientName: string, scopes?: string): Promise<SignInProvider> {
  // What the server's 401 names, as the HTTP transport would read it: its metadata and the scopes it asks for.
  const probe = await fetch(serverUrl, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
  const { resourceMetadataUrl, scope } = extractWWWAuthenticateParams(probe);
  await probe.body?.cancel();
  const loopback = await startLoopbackSignIn({ port });
  try {
    const provider = new SignInProvider(loopback.redirectUri, clientName);
    const options = { serverUrl, resourceMetadataUrl, scope: scopes ?? scope };
    if ((await auth(provider, options)) === 'AUTHORIZED') return provider;
    const answer = await loopback.result;
    const code = answer.get('code');
    if (!code) throw new Error(`sign-in not completed: ${answer.get('error') ?? 'no code'} ${answer.get('error_description') ?? ''}`.trim());
    if ((await auth(provider, { ...options, authorizationCode: code })) !== 'AUTHORIZED') throw new Error('sign-in not completed');
    return provider;
  } finally {
    loopback.close();
  }
}

/**
 * `mandate admin mcp`: a stdio MCP server that relays every message to the admin MCP server over
 * Streamable HTTP with the admin's token. The tools, the checks and the audit are the HTTP
 * server's; nothing is decided here.
 */
export async function adminCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { url: { type: 'string' }, scope: { type: 'string' }, 'callback-port': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || positionals[0] === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const command = positionals[0];
  if (!(command === 'mcp' || command === 'token') || positionals.length > 1 || (values.scope !== undefined && command !== 'token')) {
    process.stderr.write(USAGE);
    return 2;
  }
  const url = new URL(values.url ?? process.env.MANDATE_ADMIN_MCP_URL ?? 'http://localhost:9000/admin/mcp');
  if (command === 'token') {
    // The same sign-in as `admin mcp`'s: the token is for the admin resource, which the admin API shares.
    try {
      const provider = await signIn(url, Number(values['callback-port'] ?? 0), 'mandate admin token (CLI)', values.scope);
      process.stdout.write(`${provider.saved!.access_token}\n`);
      return 0;
    } catch (error) {
      process.stderr.write(`mandate admin token: ${(error as Error).message}\n`);
      return 1;
    }
  }
  const token = process.env.MANDATE_ADMIN_ACCESS_TOKEN?.trim();
  const remote = token
    ? new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${token}` } } })
    : new StreamableHTTPClientTransport(url, { authProvider: await signIn(url, Number(values['callback-port'] ?? 0), 'mandate admin mcp (stdio)') });
  const local = new StdioServerTransport();

  local.onmessage = (message: JSONRPCMessage) => {
    remote.send(message).catch((error: Error) => {
      process.stderr.write(`mandate admin mcp: ${error.message}\n`);
      // The client waits for an answer to a request: tell it why there is none.
      if (isJSONRPCRequest(message)) void local.send({ jsonrpc: '2.0', id: message.id, error: { code: -32603, message: `the admin MCP server at ${url.href}: ${error.message}` } });
    });
  };
  remote.onmessage = (message) => void local.send(message);
  remote.onerror = (error) => process.stderr.write(`mandate admin mcp: ${error.message}\n`);
  const closed = new Promise<void>((resolve) => {
    local.onclose = resolve;
    process.stdin.once('end', resolve);
  });
  await remote.start();
  await local.start();
  await closed;
  await remote.terminateSession().catch(() => undefined);
  await remote.close();
  return 0;
}
