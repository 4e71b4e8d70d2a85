import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose';
import type { GatewayConfigInput } from '../../src/config/gateway-schema.ts';
import { startTestGateway } from './gateway.ts';

/**
 * An authorization server reduced to what the gateway's approval filter talks to (issue 14
 * contract): RFC 8414 metadata and a JWKS for the tokens it signs, and the three transaction
 * endpoints — `POST /transactions`, `GET /transactions/{id}`, `POST /transactions/{id}/use` —
 * with client authentication (client_secret_basic), the subject token verified and the user,
 * client, chain and resource taken from it, and the state the test drives: approve, deny, expire.
 * Stands in for the real endpoints, built in parallel, until they land.
 */

export type TransactionStatus = 'pending' | 'approved' | 'denied' | 'used' | 'expired';

export interface FakeTransaction {
  id: string;
  status: Exclude<TransactionStatus, 'expired'>;
  sub: string;
  client_id: string;
  act: string[];
  resource: unknown;
  tool: string;
  arguments_hash: string;
  summary: string;
  details: unknown;
  requested_by: string;
  created_at: number;
  expires_at: number;
  used_at?: number;
}

export interface RecordedCall {
  method: string;
  path: string;
  client?: string;
  body: Record<string, unknown>;
}

/**
 * `up`: normal; `error`: 500 on /transactions…; `reset`: the connection is dropped (unreachable);
 * `html`: a 200 HTML page (a proxy's or a maintenance page); `redirect`: a 302 to such a page;
 * `other-id`: a `/use` of an approved transaction answers 200 "used" for another id, and a create
 * answers an approval_uri on another origin (an AS, or something, that cannot be trusted).
 */
export type FakeMode = 'up' | 'error' | 'reset' | 'html' | 'redirect' | 'other-id';

const now = () => Math.floor(Date.now() / 1000);

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk));
    req.on('end', () => {
      try {
        resolve(JSON.parse(text) as Record<string, unknown>);
      } catch {
        resolve({});
      }
    });
  });
}

export async function startFakeTransactionsAs(options: { clients?: Record<string, string> } = {}) {
  const clients = options.clients ?? { gateway: 'gw-secret' };
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const transactions = new Map<string, FakeTransaction>();
  const calls: RecordedCall[] = [];
  /** Every `/use` answered 200, in order: the transaction ids spent. */
  const granted: string[] = [];
  let mode: FakeMode = 'up';
  let issuer = '';

  const statusOf = (tx: FakeTransaction): TransactionStatus => ((tx.status === 'pending' || tx.status === 'approved') && tx.expires_at <= now() ? 'expired' : tx.status);
  const clientOf = (req: IncomingMessage): string | undefined => {
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Basic ')) return undefined;
    const [id, secret] = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':').map((part) => decodeURIComponent(part));
    return id !== undefined && clients[id] !== undefined && clients[id] === secret ? id : undefined;
  };
  const subject = async (token: unknown) => {
    if (typeof token !== 'string') return undefined;
    try {
      const { payload } = await jwtVerify(token, publicKey, { issuer });
      const act: string[] = [];
      for (let actor = payload.act as { sub?: string; act?: unknown } | undefined; actor; actor = actor.act as typeof actor) act.push(String(actor.sub));
      return { sub: String(payload.sub), client_id: String(payload.client_id), act, resource: payload.aud };
    } catch {
      return undefined;
    }
  };

  const server = createServer((req, res) => {
    void (async () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      const path = req.url ?? '/';
      const page = () => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><body>Down for maintenance</body></html>');
      };
      if (path === '/maintenance') return page();
      if (path === '/.well-known/oauth-authorization-server') return send(200, { issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token` });
      if (path === '/jwks') return send(200, { keys: [jwk] });
      if (!path.startsWith('/transactions')) return send(404, { error: 'not_found' });
      const body = req.method === 'POST' ? await readJson(req) : {};
      const client = clientOf(req);
      calls.push({ method: req.method!, path, client, body });
      if (mode === 'reset') return void req.socket.destroy();
      if (mode === 'error') return send(500, { error: 'server_error' });
      if (mode === 'html') return page();
      if (mode === 'redirect') {
        res.writeHead(302, { location: `${issuer}/maintenance` });
        return void res.end();
      }
      if (!client) return send(401, { error: 'invalid_client' });

      if (req.method === 'POST' && path === '/transactions') {
        const who = await subject(body.subject_token);
        if (!who) return send(400, { error: 'invalid_grant', error_description: 'subject_token is not an active token of this issuer' });
        if (typeof body.tool !== 'string' || typeof body.arguments_hash !== 'string' || typeof body.summary !== 'string' || body.summary.length > 200) {
          return send(400, { error: 'invalid_request' });
        }
        const lifetime = Math.min(typeof body.lifetime_seconds === 'number' ? body.lifetime_seconds : 300, 900);
        const tx: FakeTransaction = {
          id: crypto.randomUUID().replace(/-/g, ''),
          status: 'pending',
          ...who,
          tool: body.tool,
          arguments_hash: body.arguments_hash,
          summary: body.summary,
          details: body.details,
          requested_by: client,
          created_at: now(),
          expires_at: now() + lifetime,
        };
        transactions.set(tx.id, tx);
        const origin = mode === 'other-id' ? 'http://as.example.net' : issuer;
        return send(201, { id: tx.id, status: 'pending', approval_uri: `${origin}/approve/${tx.id}`, expires_at: tx.expires_at, expires_in: lifetime });
      }
      const match = /^\/transactions\/([^/]+)(\/use)?$/.exec(path);
      const tx = match ? transactions.get(decodeURIComponent(match[1]!)) : undefined;
      if (!tx || tx.requested_by !== client) return send(404, { error: 'not_found' });
      if (req.method === 'GET' && !match![2]) return send(200, { id: tx.id, status: statusOf(tx), tool: tx.tool, resource: tx.resource, arguments_hash: tx.arguments_hash, summary: tx.summary, act: tx.act, expires_at: tx.expires_at });
      if (req.method !== 'POST' || !match![2]) return send(405, { error: 'invalid_request' });
      const who = await subject(body.subject_token);
      const refuse = (error: string, description: string) => send(409, { error, error_description: description });
      if (!who || who.sub !== tx.sub || who.client_id !== tx.client_id || JSON.stringify(who.act) !== JSON.stringify(tx.act) || body.arguments_hash !== tx.arguments_hash) {
        return refuse('transaction_mismatch', 'another user, client, chain or action');
      }
      // One synchronous step from the check to the update: atomic, as the real UPDATE … WHERE is.
      const status = statusOf(tx);
      if (status !== 'approved') return refuse(`transaction_${status}`, `the transaction is ${status}`);
      if (mode === 'other-id') return send(200, { id: `${tx.id}x`, status: 'used', arguments_hash: tx.arguments_hash });
      tx.status = 'used';
      tx.used_at = now();
      granted.push(tx.id);
      // As the real AS: the transaction as it now is (src/auth-server/transactions.ts transactionView).
      return send(200, { id: tx.id, status: 'used', tool: tx.tool, arguments_hash: tx.arguments_hash, expires_at: tx.expires_at, used_at: tx.used_at });
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const get = (id: string) => {
    const tx = transactions.get(id);
    if (!tx) throw new Error(`no transaction ${id}`);
    return tx;
  };
  return {
    issuer,
    transactions,
    calls,
    granted,
    /** The calls to an endpoint: `create`, `use`. */
    callsTo: (kind: 'create' | 'use') => calls.filter((call) => call.method === 'POST' && (kind === 'create' ? call.path === '/transactions' : call.path.endsWith('/use'))),
    setMode(next: FakeMode) {
      mode = next;
    },
    status: (id: string) => statusOf(get(id)),
    approve: (id: string) => void (get(id).status = 'approved'),
    deny: (id: string) => void (get(id).status = 'denied'),
    expire: (id: string) => void (get(id).expires_at = now() - 1),
    /** An access token of this issuer for `aud`, by default Alice's through the sample agent. */
    sign(claims: Record<string, unknown>) {
      return new SignJWT({ iss: issuer, iat: now(), exp: now() + 300, jti: crypto.randomUUID(), ...claims }).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' }).sign(privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A gateway with one route `/mcp` in front of `upstreamUrl` whose approvals go to the fake AS (the
 * `gateway` client, retry check on); `route` adds the tools and anything else the test needs.
 */
export function startApprovalGateway(as: { issuer: string }, upstreamUrl: string, route: Record<string, unknown>, env: Record<string, string | undefined> = {}) {
  return startTestGateway(
    (url) => [
      {
        path: '/mcp',
        upstream: upstreamUrl,
        resource: `${url}/mcp`,
        authorization_servers: [as.issuer],
        approvals: { client_id: 'gateway', client_secret_env: 'TEST_APPROVALS_SECRET', retry_check: true },
        ...route,
      } as GatewayConfigInput['routes'][number],
    ],
    {},
    { ...env, TEST_APPROVALS_SECRET: 'gw-secret' },
  );
}
