/**
 * Interoperability with the official MCP TypeScript SDK (v1) client's OAuth flow: an MCP server
 * protected by this authorization server answers 401 with a `resource_metadata` challenge and
 * serves protected resource metadata (RFC 9728); the SDK discovers the authorization server,
 * registers dynamically (RFC 7591), sends the user to authorize with PKCE and a resource indicator
 * (RFC 8707), redeems the code and refreshes. Last, the SDK's Streamable HTTP transport runs the
 * same flow against a real McpServer behind a bearer-token check and calls a tool.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed } from '@modelcontextprotocol/sdk/shared/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import type { Browser } from 'playwright-core';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startCallbackServer, type CallbackServer } from '../helpers/callback-server.ts';
import { authorizeInChromium, launchChromium } from '../helpers/chromium.ts';
import { decodeJwt, freePort, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsChromium } from '../helpers/services.ts';
import { MemoryOAuthProvider } from '../helpers/mcp-oauth.ts';

const SCOPE = 'mcp:tools';

interface McpResourceServer {
  origin: string;
  mcpUrl: string;
  metadataUrl: string;
  /** Claims of the access tokens the MCP endpoint accepted. */
  accepted: JWTPayload[];
  /** Why requests were refused with 401. */
  refused: string[];
  close(): Promise<void>;
}

/**
 * A minimal MCP server protected by the authorization server: `/mcp` needs a bearer access token
 * (RFC 9068 JWT of this issuer, audience the MCP URL, scope mcp:tools), else 401 with an RFC 9728
 * challenge; the protected resource metadata names the issuer. Accepted requests reach a stateless
 * McpServer with one tool, `whoami`, answering the token's subject.
 */
async function startMcpResourceServer(port: number, issuer: string): Promise<McpResourceServer> {
  const origin = `http://127.0.0.1:${port}`;
  const mcpUrl = `${origin}/mcp`;
  const metadataUrl = `${origin}/.well-known/oauth-protected-resource/mcp`;
  const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const accepted: JWTPayload[] = [];
  const refused: string[] = [];

  const challenge = (res: ServerResponse, why: string, error?: string) => {
    refused.push(why);
    const parts = [`resource_metadata="${metadataUrl}"`, `scope="${SCOPE}"`, ...(error ? [`error="${error}"`] : [])];
    res.writeHead(401, { 'www-authenticate': `Bearer ${parts.join(', ')}`, 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: error ?? 'unauthorized' }));
  };

  const handleMcp = async (req: IncomingMessage, res: ServerResponse) => {
    const header = req.headers.authorization ?? '';
    if (!/^Bearer /i.test(header)) return challenge(res, 'no token');
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(header.slice(7).trim(), jwks, { issuer, audience: mcpUrl, typ: 'at+jwt', algorithms: ['ES256'] }));
    } catch (error) {
      return challenge(res, `invalid token: ${(error as Error).message}`, 'invalid_token');
    }
    if (!String(claims.scope ?? '').split(' ').includes(SCOPE)) return challenge(res, 'missing scope', 'insufficient_scope');
    accepted.push(claims);
    const mcp = new McpServer({ name: 'mandate-interop-mcp', version: '1.0.0' });
    mcp.registerTool('whoami', { description: 'Who the access token is for' }, async () => ({
      content: [{ type: 'text', text: String(claims.sub) }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  };

  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', origin).pathname;
    if (req.method === 'GET' && path === '/.well-known/oauth-protected-resource/mcp') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ resource: mcpUrl, authorization_servers: [issuer], scopes_supported: [SCOPE], bearer_methods_supported: ['header'], resource_name: 'SDK test MCP' }));
      return;
    }
    if (path === '/mcp') {
      handleMcp(req, res).catch((error: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(error.message);
      });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    origin,
    mcpUrl,
    metadataUrl,
    accepted,
    refused,
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const jwtHeader = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;

describe('MCP TypeScript SDK client OAuth interoperability', () => {
  let as: TestAuthServer;
  let rs: McpResourceServer;
  let callback: CallbackServer;

  before(async () => {
    const port = await freePort();
    // The resource server's URL must be known to the authorization server before it starts.
    const mcpUrl = `http://127.0.0.1:${port}/mcp`;
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ resources: [{ id: mcpUrl, name: 'SDK test MCP', scopes: [{ name: SCOPE, description: 'Use the tools' }] }], registration: { allowed_scopes: [SCOPE] } });
    rs = await startMcpResourceServer(port, as.issuer);
    callback = await startCallbackServer();
  });
  after(async () => {
    await callback?.close();
    await rs?.close();
    await as?.close();
  });

  /** The SDK's `auth()` from nothing to tokens, with the user's part done by `drive`. */
  async function sdkAuthFlow(drive: (authorizationUrl: URL) => Promise<URL>) {
    const provider = new MemoryOAuthProvider(callback.redirectUri);
    assert.equal(await auth(provider, { serverUrl: rs.mcpUrl }), 'REDIRECT');

    // Discovery through the resource's metadata, then dynamic registration at our server.
    const registered = provider.client as OAuthClientInformationMixed & { token_endpoint_auth_method?: string; scope?: string };
    assert.ok(registered?.client_id, 'the SDK registered a client dynamically');
    assert.equal(registered.token_endpoint_auth_method, 'none');
    assert.equal(registered.scope, SCOPE, 'the SDK registers with the scopes of the protected resource metadata');
    assert.equal(provider.redirects, 1);

    const url = provider.authorizationUrl!;
    assert.equal(url.origin + url.pathname, `${as.issuer}/authorize`);
    assert.equal(url.searchParams.get('client_id'), registered.client_id);
    assert.equal(url.searchParams.get('resource'), rs.mcpUrl, 'RFC 8707 resource indicator from the protected resource metadata');
    assert.equal(url.searchParams.get('scope'), SCOPE);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('redirect_uri'), callback.redirectUri);

    const back = await drive(url);
    assert.equal(back.origin + back.pathname, callback.redirectUri);
    assert.equal(back.searchParams.get('iss'), as.issuer);
    assert.equal(back.searchParams.get('state'), provider.lastState);
    const code = back.searchParams.get('code');
    assert.ok(code, `a code in ${back.href}`);

    assert.equal(await auth(provider, { serverUrl: rs.mcpUrl, authorizationCode: code }), 'AUTHORIZED');
    const tokens = provider.saved!;
    assert.ok(tokens.access_token);
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.equal(tokens.scope, SCOPE);
    assert.ok(tokens.refresh_token, 'a refresh token for a client registered for refresh_token');
    assert.equal(jwtHeader(tokens.access_token).typ, 'at+jwt');
    const claims = decodeJwt(tokens.access_token);
    assert.equal(claims.iss, as.issuer);
    assert.equal(claims.aud, rs.mcpUrl);
    assert.equal(claims.scope, SCOPE);
    assert.equal(claims.client_id, registered.client_id);

    // With a refresh token stored, the next auth() refreshes (resource included) instead of redirecting.
    assert.equal(await auth(provider, { serverUrl: rs.mcpUrl }), 'AUTHORIZED');
    assert.equal(provider.redirects, 1, 'no second trip to the browser');
    const refreshed = provider.saved!;
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'refresh tokens rotate');
    assert.equal(decodeJwt(refreshed.access_token).aud, rs.mcpUrl);
    assert.equal(decodeJwt(refreshed.access_token).sub, claims.sub);
    return provider;
  }

  it('discovers, registers, authorizes with a resource indicator and refreshes (FormBrowser)', async () => {
    await sdkAuthFlow((url) => new FormBrowser(as.issuer).authorize(url.href));
  });

  it('the Streamable HTTP transport runs the flow on a 401 and then calls a tool with the token', async () => {
    const provider = new MemoryOAuthProvider(callback.redirectUri);
    const first = new StreamableHTTPClientTransport(new URL(rs.mcpUrl), { authProvider: provider });
    const refusedBefore = rs.refused.length;
    await assert.rejects(new Client({ name: 'interop-host', version: '1.0.0' }).connect(first), UnauthorizedError);
    assert.ok(rs.refused.length > refusedBefore, 'the MCP server challenged the unauthenticated request');
    assert.ok(provider.authorizationUrl, 'the transport started the authorization flow');
    assert.equal(provider.authorizationUrl.searchParams.get('resource'), rs.mcpUrl);

    const back = await new FormBrowser(as.issuer).authorize(provider.authorizationUrl.href);
    assert.equal(back.searchParams.get('iss'), as.issuer);
    await first.finishAuth(back.searchParams.get('code')!);
    await first.close();

    const client = new Client({ name: 'interop-host', version: '1.0.0' });
    const acceptedBefore = rs.accepted.length;
    await client.connect(new StreamableHTTPClientTransport(new URL(rs.mcpUrl), { authProvider: provider }));
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(
        tools.map((t) => t.name),
        ['whoami'],
      );
      const result = (await client.callTool({ name: 'whoami', arguments: {} })) as { content: { type: string; text: string }[] };
      const sub = decodeJwt(provider.saved!.access_token).sub;
      assert.equal(result.content[0]?.text, sub);
      assert.ok(rs.accepted.length > acceptedBefore);
      assert.ok(rs.accepted.slice(acceptedBefore).every((c) => c.aud === rs.mcpUrl && c.iss === as.issuer));
    } finally {
      await client.close();
    }
  });

  describe('in Chromium', needsChromium(), () => {
    let browser: Browser;
    before(async () => {
      browser = await launchChromium();
    });
    after(async () => browser?.close());

    it('discovers, registers, authorizes with a resource indicator and refreshes (Chromium)', async () => {
      await sdkAuthFlow(async (url) => {
        const { redirect, steps } = await authorizeInChromium(browser, url.href, { callback });
        assert.deepEqual(steps, ['login', 'consent']);
        return redirect;
      });
    });
  });
});
