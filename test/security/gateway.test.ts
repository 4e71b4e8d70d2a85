import { request } from 'node:http';
import { after, before, describe } from 'node:test';
import { MCP_HEADERS, mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { gatewayAudit, rpc, runCases, type AttackCase } from './runner.ts';

const TRANSFER_RULE = "size(act) == 1 && act[0].sub == 'sample-agent' && args.amount <= 100";

/**
 * The MCP gateway in front of an upstream that has no auth of its own: the MCP transport's checks
 * (Origin, Accept, Content-Type, protocol version, body), the token (RFC 6750, RFC 9068), route
 * and tool scopes, CEL rules on claims, act chain and arguments, session binding and budgets.
 * Each refusal is audited with its `rejection` and reason.
 */
describe('security: gateway', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      {
        path: '/mcp',
        upstream: upstream.url,
        resource: `${url}/mcp`,
        authorization_servers: [issuer.issuer],
        allowed_origins: ['http://localhost:6277'],
        max_body_bytes: 4096,
        scopes: ['mcp'],
        tools: {
          read_balance: { scopes: ['banking:read'] },
          transfer: {
            scopes: ['banking:transfer'],
            allow: TRANSFER_RULE,
            reason: 'transfers need the sample agent acting alone, up to 100',
          },
          echo: {},
        },
        unlisted_tools: 'deny',
        rules: [{ allow: "!(sub in ['mallory'])", reason: 'mallory is blocked' }],
        rate_limits: [{ name: 'echo-per-subject', key: ['subject', 'tool'], limit: 2, window_seconds: 60, tools: ['echo'] }],
      },
      { path: '/other', upstream: upstream.url, resource: `${url}/other`, authorization_servers: [issuer.issuer] },
    ]);
    resource = `${gateway.url}/mcp`;
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const token = (claims: Record<string, unknown> = {}) =>
    issuer.sign({ sub: 'alice', aud: resource, client_id: 'sample-agent', scope: 'mcp banking:read banking:transfer', act: { sub: 'sample-agent', client_id: 'sample-agent' }, ...claims });
  const bearer = async (claims?: Record<string, unknown>) => ({ authorization: `Bearer ${await token(claims)}` });
  const call = (message: unknown, headers: () => Promise<Record<string, string>> = () => bearer(), url = () => resource) => async () => rpc(await mcpPost(url(), message, await headers()));
  const withHeaders = (extra: Record<string, string>, message: unknown = toolCall('echo')) => call(message, async () => ({ ...(await bearer()), ...extra }));
  const c = (name: string, attack: AttackCase['attack'], status: number, error: number, auditKind: string, auditReason: string | RegExp): AttackCase => ({ name, attack, status, error, auditKind, auditReason });

  const cases: AttackCase[] = [
    // Authentication.
    c('no token', call(toolCall('echo'), async () => ({})), 401, -32001, 'no_token', 'no Authorization header'),
    c('token in the query string', async () => rpc(await mcpPost(`${resource}?access_token=${await token()}`, toolCall('echo'))), 400, -32600, 'invalid_request', 'access_token in the query (only the Authorization header is accepted)'),
    c('token in the JSON-RPC body', call({ ...toolCall('echo'), params: { name: 'echo', arguments: {}, _meta: { access_token: 'x' } } }, async () => ({})), 401, -32001, 'no_token', 'no Authorization header'),
    c('a token for another route (wrong audience)', call(toolCall('echo'), () => bearer({ aud: `${gateway.url}/other` })), 401, -32001, 'invalid_token', 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    c("this route's token at another route", call(toolCall('echo'), () => bearer(), () => `${gateway.url}/other`), 401, -32001, 'invalid_token', 'ERR_JWT_CLAIM_VALIDATION_FAILED'),
    c('a malformed Bearer header (two tokens)', call(toolCall('echo'), async () => ({ authorization: `Bearer ${await token()} extra` })), 401, -32001, 'invalid_token', 'Authorization is not a Bearer token'),
    // Scopes and rules.
    c('insufficient scope for the route', call(toolCall('echo'), () => bearer({ scope: 'banking:read' })), 403, -32003, 'insufficient_scope', 'insufficient scope: this route needs mcp'),
    c('insufficient scope for the tool', call(toolCall('transfer', { amount: 5 }), () => bearer({ scope: 'mcp banking:read' })), 403, -32003, 'insufficient_scope', 'missing scope banking:transfer'),
    c('a scope smuggled with different case', call(toolCall('transfer', { amount: 5 }), () => bearer({ scope: 'mcp banking:read BANKING:TRANSFER' })), 403, -32003, 'insufficient_scope', 'missing scope banking:transfer'),
    c('scope as an array claim with a superstring', call(toolCall('transfer', { amount: 5 }), () => bearer({ scope: 'mcp banking:transfers' })), 403, -32003, 'insufficient_scope', 'missing scope banking:transfer'),
    c('a tool rule refusing the arguments', call(toolCall('transfer', { amount: 5000 })), 403, -32003, 'tool_denied', 'transfers need the sample agent acting alone, up to 100'),
    c('a tool rule refusing another actor', call(toolCall('transfer', { amount: 5 }), () => bearer({ act: { sub: 'other-agent' } })), 403, -32003, 'tool_denied', 'transfers need the sample agent acting alone, up to 100'),
    c('a tool rule refusing a longer act chain', call(toolCall('transfer', { amount: 5 }), () => bearer({ act: { sub: 'mcp-server', act: { sub: 'sample-agent' } } })), 403, -32003, 'tool_denied', 'transfers need the sample agent acting alone, up to 100'),
    c('a tool rule refusing a direct call with no actor', call(toolCall('transfer', { amount: 5 }), () => bearer({ act: undefined })), 403, -32003, 'tool_denied', 'transfers need the sample agent acting alone, up to 100'),
    c('a tool rule that cannot be evaluated (fails closed)', call(toolCall('transfer', {})), 403, -32003, 'tool_denied', `rule failed: CEL ${JSON.stringify(TRANSFER_RULE)}: No such key: amount`),
    c('an amount sent as a string', call(toolCall('transfer', { amount: '5' })), 403, -32003, 'tool_denied', `rule failed: CEL ${JSON.stringify(TRANSFER_RULE)}: no such overload: dyn<string> <= int`),
    c('a tool with no rule (unlisted tools denied)', call(toolCall('delete_everything')), 403, -32003, 'tool_denied', 'tool delete_everything has no rule and unlisted tools are denied'),
    c('a tool name that differs only in case', call(toolCall('Transfer', { amount: 5 })), 403, -32003, 'tool_spelling', 'tool name "Transfer" differs from the configured tool transfer only by case, white space, invisible or compatibility characters'),
    c('a route rule on the claims', call(toolCall('echo'), () => bearer({ sub: 'mallory' })), 403, -32003, 'rule_denied', 'mallory is blocked'),
    // Transport (MCP Streamable HTTP security).
    c('an Origin that is not allowed (DNS rebinding, cross-site)', withHeaders({ origin: 'https://attacker.test' }), 403, -32600, 'origin_not_allowed', 'origin not allowed'),
    c('DNS rebinding: a page on a name that resolves to the gateway (Origin and Host agree)', async () => {
      const { port } = new URL(gateway.url);
      const rebound = `rebind.attacker.test:${port}`;
      const body = JSON.stringify(toolCall('echo'));
      const headers = { ...MCP_HEADERS, ...(await bearer()), host: rebound, origin: `http://${rebound}`, 'content-length': String(Buffer.byteLength(body)) };
      return new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers }, (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk));
          res.on('end', () => resolve(rpc({ status: res.statusCode!, json: JSON.parse(text) as Record<string, unknown> })));
        });
        req.on('error', reject);
        req.end(body);
      });
    }, 403, -32600, 'origin_not_allowed', 'origin not allowed'),
    c('Origin null (sandboxed frame)', withHeaders({ origin: 'null' }), 403, -32600, 'origin_not_allowed', 'origin not allowed'),
    c('a loopback Origin on another port', withHeaders({ origin: 'http://127.0.0.1:1' }), 403, -32600, 'origin_not_allowed', 'origin not allowed'),
    c('an allowed Origin with a path suffix trick', withHeaders({ origin: 'http://localhost:6277.attacker.test' }), 403, -32600, 'origin_not_allowed', 'origin not allowed'),
    c('an Accept without text/event-stream', withHeaders({ accept: 'application/json' }), 406, -32600, 'not_acceptable', 'Accept must list application/json and text/event-stream'),
    c('a Content-Type that is not JSON (form post from a page)', withHeaders({ 'content-type': 'text/plain' }), 415, -32600, 'unsupported_media_type', 'Content-Type must be application/json'),
    c('an unknown MCP-Protocol-Version', withHeaders({ 'mcp-protocol-version': '1999-01-01' }), 400, -32600, 'protocol_version', 'unsupported MCP-Protocol-Version 1999-01-01'),
    c('Mcp-Method disagreeing with the body', withHeaders({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list', 'mcp-name': 'echo' }), 400, -32020, 'header_mismatch', 'Mcp-Method header "tools/list" does not match the body\'s method "tools/call"'),
    c('Mcp-Name disagreeing with the body (a permitted tool named, another called)', withHeaders({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' }, toolCall('transfer', { amount: 5 })), 400, -32020, 'header_mismatch', 'Mcp-Name header "echo" does not match the body "transfer"'),
    c('a body over max_body_bytes', call(toolCall('echo', { pad: 'x'.repeat(8192) })), 413, -32600, 'body_too_large', 'body larger than 4096 bytes'),
    c('a body that is not JSON', call('{"jsonrpc":'), 400, -32700, 'malformed', 'not JSON: Unexpected end of JSON input'),
    c('a JSON-RPC batch (one call hidden among others)', call([{ jsonrpc: '2.0', id: 1, method: 'ping' }, toolCall('transfer', { amount: 5000 }, 2)]), 400, -32600, 'malformed', 'JSON-RPC batches are not supported by MCP'),
    c('tools/call without a name', call({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }), 400, -32602, 'malformed', 'tools/call needs params.name'),
    c('a tool name that is not a string', call({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: ['transfer'] } }), 400, -32602, 'malformed', 'tools/call needs params.name'),
    c('PUT', async () => {
      const res = await fetch(resource, { method: 'PUT', headers: { ...MCP_HEADERS, ...(await bearer()) }, body: '{}' });
      return rpc({ status: res.status, json: (await res.json()) as Record<string, unknown> });
    }, 405, -32600, 'method_not_allowed', 'PUT is not an MCP method'),
    // A method spelled unlike MCP's would skip tool authorization and could be read leniently upstream.
    c('tools/call spelled in capitals', call({ ...toolCall('transfer', { amount: 5000 }), method: 'TOOLS/CALL' }), 400, -32600, 'method_spelling', 'method "TOOLS/CALL" is not spelled as the MCP method tools/call'),
    c('tools/call with a trailing space', call({ ...toolCall('transfer', { amount: 5000 }), method: 'tools/call ' }), 400, -32600, 'method_spelling', 'method "tools/call " is not spelled as the MCP method tools/call'),
    // Sessions and budgets.
    c(
      'a session id this gateway has no binding for (opened at another instance, before a restart, or expired)',
      call(toolCall('echo'), async () => ({ ...(await bearer({ sub: 'bob' })), 'mcp-session-id': `elsewhere-${crypto.randomUUID()}` })),
      404,
      -32001,
      'unknown_session',
      /^no binding for this Mcp-Session-Id/,
    ),
    {
      name: "session hijack: another user's Mcp-Session-Id",
      attack: async () => {
        const opened = await mcpPost(resource, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'a', version: '1' } } }, await bearer());
        const session = opened.headers.get('mcp-session-id');
        if (!session) return { status: opened.status, error: 'no session opened' };
        return rpc(await mcpPost(resource, toolCall('echo'), { ...(await bearer({ sub: 'bob' })), 'mcp-session-id': session }));
      },
      status: 404,
      error: -32001,
      auditKind: 'session_mismatch',
      auditReason: 'session opened by another subject',
    },
    {
      name: 'a rate limit used up',
      attack: async () => {
        const headers = await bearer({ sub: 'carol' });
        for (let i = 0; i < 2; i++) await mcpPost(resource, toolCall('echo'), headers);
        return rpc(await mcpPost(resource, toolCall('echo'), headers));
      },
      status: 429,
      error: -32029,
      auditKind: 'rate_limited',
      auditReason: 'limit echo-per-subject: 2 per 60 s',
    },
  ];
  runCases(cases, gatewayAudit(() => gateway));
});
