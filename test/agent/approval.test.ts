import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { UnsecuredJWT } from 'jose';
import { z } from 'zod';
import { MandateAgent } from '../../src/agent/agent.ts';
import { ApprovalRequiredError, checkAsk, type ApprovalRequest } from '../../src/agent/approval.ts';
import { AgentError } from '../../src/agent/errors.ts';
import { CredentialStore } from '../../src/agent/store.ts';
import { agentCli } from '../helpers/agent-cli.ts';

/**
 * Issue 14, parts 4 and 5: the agent meets a call that needs the person's approval, in each of the
 * three forms of the contract (/work/wt/TX-CONTRACT.md, "Gateway"), polls the AS's transaction with
 * the token the call carried, and retries exactly once after approval — never after a denial or
 * an expiry. The MCP endpoint and the AS are small fakes that keep to the contract: a real MCP SDK
 * server behind a wrapper that does what the gateway does for `transfer`, and an AS that answers
 * `GET /transactions/{id}` (status flipped by the test). The end-to-end test against the real
 * gateway and AS comes when the pieces are merged.
 */

type Form = '2025-11-25' | '2026-07-28' | 'http-403';
type Status = 'pending' | 'approved' | 'denied' | 'used' | 'expired';

interface Transaction {
  id: string;
  status: Status;
  summary: string;
  argsKey: string;
  requestState: string;
  expiresAt: number;
  /** What the test decides: after this many GETs, the status becomes `to`. */
  decide?: { afterPolls: number; to: Status };
  polls: number;
}

const TOKEN = new UnsecuredJWT({ sub: 'demo-sub', client_id: 'cli-agent', scope: 'banking:transfer' }).setExpirationTime('2h').encode();

const listen = async (server: Server) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};
const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
const readBody = async (req: IncomingMessage) => {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
};

/** The AS's side: metadata, and `GET /transactions/{id}` for a bearer token of the transaction's user. */
async function startFakeAs() {
  const transactions = new Map<string, Transaction>();
  const polls: { id: string; authorization: string | undefined }[] = [];
  let issuer = '';
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', issuer);
    if (url.pathname === '/.well-known/oauth-authorization-server') return json(res, 200, { issuer, token_endpoint: `${issuer}/token`, authorization_endpoint: `${issuer}/authorize` });
    const match = /^\/transactions\/([^/]+)$/.exec(url.pathname);
    if (req.method === 'GET' && match) {
      const id = decodeURIComponent(match[1]!);
      polls.push({ id, authorization: req.headers.authorization });
      const transaction = transactions.get(id);
      // Unknown, or not this caller's: 404 either way (the contract never reveals existence).
      if (!transaction || req.headers.authorization !== `Bearer ${TOKEN}`) return json(res, 404, { error: 'not_found' });
      transaction.polls++;
      if (transaction.decide && transaction.polls >= transaction.decide.afterPolls) transaction.status = transaction.decide.to;
      const expired = (transaction.status === 'pending' || transaction.status === 'approved') && Date.now() / 1000 >= transaction.expiresAt;
      return json(res, 200, {
        id,
        status: expired ? 'expired' : transaction.status,
        tool: 'transfer',
        resource: 'fake',
        arguments_hash: 'h',
        summary: transaction.summary,
        act: [],
        expires_at: transaction.expiresAt,
      });
    }
    json(res, 404, { error: 'not_found' });
  });
  issuer = await listen(server);
  return {
    issuer,
    transactions,
    polls,
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())),
  };
}

/** A real MCP server (stateless, JSON responses) with `transfer` and `read_balance`. */
function bank(performed: { to: string; amount: number }[]): McpServer {
  const server = new McpServer({ name: 'fake-bank', version: '1.0.0' });
  server.registerTool('read_balance', { description: 'The balance.', inputSchema: {} }, async () => ({ content: [{ type: 'text', text: '{"balance":"1250.00"}' }] }));
  server.registerTool('transfer', { description: 'Move money.', inputSchema: { to: z.string(), amount: z.number() } }, async ({ to, amount }) => {
    performed.push({ to, amount });
    return { content: [{ type: 'text', text: JSON.stringify({ transferred: amount.toFixed(2), to }) }] };
  });
  return server;
}

/**
 * The MCP endpoint as the gateway shows it (contract, "Gateway"): 401 with `resource_metadata`
 * without a token; for `transfer` without an approval, a transaction at the AS and the answer for
 * the caller's MCP-Protocol-Version (or `form`, forced by the test); on a retry with the same
 * arguments (or the 2026 `requestState`), the call goes through once when approved, the same answer
 * while pending, a refusal otherwise.
 */
async function startFakeMcp(as: Awaited<ReturnType<typeof startFakeAs>>) {
  const state = {
    form: undefined as Form | undefined,
    lifetime: 300,
    /** Where the approval page is said to be (default: the AS's /approve/{id}). */
    approvalBase: undefined as string | undefined,
    calls: [] as { params: Record<string, unknown>; version: string | undefined }[],
    performed: [] as { to: string; amount: number }[],
    decide: undefined as Transaction['decide'],
    nextId: 1,
  };
  let base = '';
  const pending = new Map<string, string>();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', base);
    if (url.pathname === '/.well-known/oauth-protected-resource/mcp') return json(res, 200, { resource: `${base}/mcp`, authorization_servers: [as.issuer] });
    if (url.pathname !== '/mcp') return json(res, 404, {});
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      return json(res, 401, { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'unauthorized' } }, { 'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"` });
    }
    const body = (await readBody(req).then((text) => (text ? JSON.parse(text) : undefined))) as { id?: number; method?: string; params?: Record<string, unknown> } | undefined;
    if (body?.method === 'tools/call' && body.params?.name === 'transfer') {
      const version = req.headers['mcp-protocol-version'] as string | undefined;
      state.calls.push({ params: body.params, version });
      const args = body.params.arguments as { to: string; amount: number };
      const argsKey = JSON.stringify(args);
      const byState = typeof body.params.requestState === 'string' ? [...as.transactions.values()].find((t) => t.requestState === body.params!.requestState) : undefined;
      const known = byState ?? as.transactions.get(pending.get(argsKey) ?? '');
      if (known && known.argsKey === argsKey) {
        const status = Date.now() / 1000 >= known.expiresAt ? 'expired' : known.status;
        if (status === 'approved') {
          known.status = 'used';
          pending.delete(argsKey);
          return handleMcp(req, res, body);
        }
        if (status !== 'pending') {
          pending.delete(argsKey);
          return json(res, 403, { jsonrpc: '2.0', id: body.id, error: { code: -32003, message: `the approval was ${status}` } });
        }
        return answer(res, body.id, known, state.form ?? formOf(version));
      }
      const id = `tx${String(state.nextId++).padStart(8, '0')}`;
      const transaction: Transaction = {
        id,
        status: 'pending',
        summary: `Transfer ${args.amount.toFixed(2)} EUR to ${args.to}`,
        argsKey,
        requestState: `${id}.mac`,
        expiresAt: Math.floor(Date.now() / 1000) + state.lifetime,
        decide: state.decide,
        polls: 0,
      };
      as.transactions.set(id, transaction);
      pending.set(argsKey, id);
      return answer(res, body.id, transaction, state.form ?? formOf(version));
    }
    return handleMcp(req, res, body);
  });
  const formOf = (version: string | undefined): Form => (version === '2025-11-25' ? '2025-11-25' : version === '2026-07-28' ? '2026-07-28' : 'http-403');
  const answer = (res: ServerResponse, id: number | undefined, transaction: Transaction, form: Form) => {
    const url = `${state.approvalBase ?? as.issuer}/approve/${transaction.id}`;
    const elicitation = { mode: 'url', elicitationId: transaction.id, url, message: transaction.summary };
    if (form === '2025-11-25') return json(res, 200, { jsonrpc: '2.0', id, error: { code: -32042, message: 'This call needs your approval: open the link', data: { elicitations: [elicitation] } } });
    if (form === '2026-07-28') {
      return json(res, 200, { jsonrpc: '2.0', id, result: { resultType: 'input_required', inputRequests: { approval: { method: 'elicitation/create', params: elicitation } }, requestState: transaction.requestState } });
    }
    return json(
      res,
      403,
      { jsonrpc: '2.0', id, error: { code: -32003, message: `This call needs your approval: open ${url}, approve, then retry the same call` } },
      { 'www-authenticate': `Bearer error="insufficient_authorization", approval_uri="${url}"` },
    );
  };
  const handleMcp = async (req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const mcp = bank(state.performed);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => void transport.close().then(() => mcp.close()));
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  };
  base = await listen(server);
  return {
    url: `${base}/mcp`,
    state,
    reset() {
      Object.assign(state, { form: undefined, lifetime: 300, approvalBase: undefined, calls: [], performed: [], decide: undefined, nextId: 1 });
      pending.clear();
      as.transactions.clear();
      as.polls.length = 0;
    },
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())),
  };
}

/** The person signed in directly for the MCP server: the agent uses the stored token as it is. */
const signedIn = (issuer: string, mcpUrl: string) => ({
  version: 1,
  issuers: { [issuer]: { subject: { [mcpUrl]: { access_token: TOKEN, expires_at: Math.floor(Date.now() / 1000) + 7200, scope: 'banking:transfer', client_id: 'cli-agent', mode: 'direct' } } } },
});

describe('a call that needs the person\'s approval (issue 14)', () => {
  let as: Awaited<ReturnType<typeof startFakeAs>>;
  let mcp: Awaited<ReturnType<typeof startFakeMcp>>;
  let home: string;
  before(async () => {
    as = await startFakeAs();
    mcp = await startFakeMcp(as);
    home = mkdtempSync(join(tmpdir(), 'mandate-approval-'));
    writeFileSync(join(home, 'credentials.json'), JSON.stringify(signedIn(as.issuer, mcp.url)), { mode: 0o600 });
  });
  after(async () => {
    await mcp?.close();
    await as?.close();
    rmSync(home, { recursive: true, force: true });
  });
  beforeEach(() => mcp.reset());

  const agent = (options: Partial<ConstructorParameters<typeof MandateAgent>[0]> = {}) =>
    new MandateAgent({ mcpUrl: mcp.url, clientId: 'cli-agent', store: new CredentialStore(join(home, 'credentials.json')), approvalPollIntervalMs: 20, ...options });

  describe('the SDK: agent.callTool', () => {
    const cases: { form: Form; what: string }[] = [
      { form: '2025-11-25', what: 'JSON-RPC error -32042 with a URL elicitation (what the SDK client negotiates)' },
      { form: '2026-07-28', what: 'the 2026-07-28 input_required result' },
      { form: 'http-403', what: '403 insufficient_authorization with approval_uri' },
    ];
    for (const { form, what } of cases) {
      it(`${what}: shows the AS's summary and link, polls with the call's token, retries exactly once after approval`, async () => {
        mcp.state.form = form;
        mcp.state.decide = { afterPolls: 3, to: 'approved' };
        const asked: ApprovalRequest[] = [];
        const progress: string[] = [];
        const result = await agent().callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: (request) => void asked.push({ ...request }), onApprovalProgress: ({ status }) => void progress.push(status) });
        assert.deepEqual(result.content, [{ type: 'text', text: '{"transferred":"250.00","to":"bob"}' }]);
        assert.deepEqual(mcp.state.performed, [{ to: 'bob', amount: 250 }], 'the transfer ran once');
        assert.equal(mcp.state.calls.length, 2, 'the first call and exactly one retry');
        assert.equal(mcp.state.calls[0]!.version, '2025-11-25', 'the agent (MCP SDK v1 client) negotiates 2025-11-25');
        assert.equal(asked.length, 1);
        const [request] = asked;
        assert.equal(request!.transactionId, 'tx00000001');
        assert.equal(request!.url, `${as.issuer}/approve/tx00000001`);
        assert.equal(request!.message, 'Transfer 250.00 EUR to bob');
        assert.equal(request!.approvalsPage, `${as.issuer}/approvals`);
        assert.equal(request!.form, form === '2025-11-25' ? 'url-elicitation' : form === '2026-07-28' ? 'input-required' : 'http-403');
        assert.equal(as.polls.length, 3, 'a first look, then polls until approved');
        assert.ok(as.polls.every((poll) => poll.id === 'tx00000001' && poll.authorization === `Bearer ${TOKEN}`), 'polled with the token the call carried');
        assert.deepEqual(progress.at(-1), 'approved');
        const retry = mcp.state.calls[1]!.params;
        assert.deepEqual(retry.arguments, { to: 'bob', amount: 250 }, 'the same call');
        if (form === '2026-07-28') {
          assert.equal(retry.requestState, 'tx00000001.mac', 'the opaque state echoed');
          assert.deepEqual(retry.inputResponses, { approval: { action: 'accept' } });
        } else {
          assert.equal(retry.requestState, undefined);
          assert.equal(retry.inputResponses, undefined);
        }
      });
    }

    for (const form of ['2025-11-25', '2026-07-28', 'http-403'] as const) {
      it(`denied (${form}): approval_denied, exit code 11, never retried`, async () => {
        mcp.state.form = form;
        mcp.state.decide = { afterPolls: 2, to: 'denied' };
        const error = await agent()
          .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => undefined })
          .then(() => assert.fail('no result'), (e: unknown) => e);
        assert.ok(error instanceof AgentError);
        assert.equal(error.kind, 'approval_denied');
        assert.equal(error.exitCode, 11);
        assert.match(error.message, /you denied the call to transfer \(Transfer 250\.00 EUR to bob\)/);
        assert.equal(mcp.state.calls.length, 1, 'not retried');
        assert.deepEqual(mcp.state.performed, []);
      });
    }

    it('expired while waiting (the transaction\'s expires_at is the cap): approval_expired, exit code 12, never retried', async () => {
      mcp.state.lifetime = 1;
      const started = Date.now();
      const error = await agent()
        .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => undefined })
        .then(() => assert.fail('no result'), (e: unknown) => e);
      assert.ok(error instanceof AgentError);
      assert.equal(error.kind, 'approval_expired');
      assert.equal(error.exitCode, 12);
      assert.ok(Date.now() - started < 3_000, 'stops at the expiry');
      assert.equal(mcp.state.calls.length, 1);
      assert.deepEqual(mcp.state.performed, []);
    });

    it('said expired by the AS: approval_expired at once', async () => {
      mcp.state.decide = { afterPolls: 2, to: 'expired' };
      const error = await agent()
        .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => undefined })
        .then(() => assert.fail('no result'), (e: unknown) => e);
      assert.equal((error as AgentError).kind, 'approval_expired');
      assert.equal(mcp.state.calls.length, 1);
    });

    it('without an onApproval handler (nobody to show the link to), or one that answers false: ApprovalRequiredError with the link, no wait', async () => {
      const error = await agent()
        .callTool('transfer', { to: 'bob', amount: 250 })
        .then(() => assert.fail('no result'), (e: unknown) => e);
      assert.ok(error instanceof ApprovalRequiredError);
      assert.equal(error.exitCode, 13);
      assert.equal(error.request.url, `${as.issuer}/approve/tx00000001`);
      assert.match(error.message, /needs your approval \(Transfer 250\.00 EUR to bob\): open http:\/\/127\.0\.0\.1:\d+\/approve\/tx00000001/);
      assert.equal(as.polls.length, 1, 'one look at the AS (the transaction exists, its summary), no waiting');
      const declined = await agent()
        .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => false })
        .then(() => assert.fail('no result'), (e: unknown) => e);
      assert.ok(declined instanceof ApprovalRequiredError);
      assert.deepEqual(mcp.state.performed, []);
    });

    it('approved before the agent looked (the same call made again after approving): retried at once', async () => {
      const first = await agent()
        .callTool('transfer', { to: 'carol', amount: 120 })
        .catch((e: unknown) => e);
      assert.ok(first instanceof ApprovalRequiredError);
      as.transactions.get('tx00000001')!.status = 'approved';
      let told = 0;
      const result = await agent().callTool('transfer', { to: 'carol', amount: 120 }, { onApproval: () => void told++ });
      assert.match(JSON.stringify(result.content), /carol/);
      assert.equal(told, 0, 'nothing to ask');
      assert.deepEqual(mcp.state.performed, [{ to: 'carol', amount: 120 }]);
    });

    it('a link that is not the authorization server\'s is never shown (the page asks for a password): protocol error, in every form', async () => {
      for (const form of ['2025-11-25', '2026-07-28', 'http-403'] as const) {
        mcp.reset();
        mcp.state.form = form;
        mcp.state.approvalBase = 'http://127.0.0.1:1';
        let told = 0;
        const error = await agent()
          .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => void told++ })
          .then(() => assert.fail('no result'), (e: unknown) => e);
        assert.equal((error as AgentError).kind, 'protocol', form);
        assert.match((error as Error).message, /asks you to approve at http:\/\/127\.0\.0\.1:1, which is not your authorization server/);
        assert.equal(told, 0);
        assert.equal(as.polls.length, 0);
      }
    });

    it('a link to another page of the authorization server is never shown either: protocol error, in every form', async () => {
      for (const form of ['2025-11-25', '2026-07-28', 'http-403'] as const) {
        mcp.reset();
        mcp.state.form = form;
        mcp.state.approvalBase = `${as.issuer}/authorize`;
        let told = 0;
        const error = await agent()
          .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => void told++ })
          .then(() => assert.fail('no result'), (e: unknown) => e);
        assert.equal((error as AgentError).kind, 'protocol', form);
        assert.match((error as Error).message, /asks you to approve at http:\/\/127\.0\.0\.1:\d+\/authorize\/approve\/tx00000001, which is not an approval page of your authorization server \(\/approve\/\{id\}, no query\)/);
        assert.equal(told, 0);
        assert.equal(as.polls.length, 0);
      }
    });

    it('checkAsk: only <issuer path>/approve/{id}, no query, and the elicitation id of a URL elicitation is the page\'s', () => {
      const id = 'AAAAAAAAAAAAAAAAAAAAAA';
      const ask = (url: string, elicitationId?: string) => checkAsk({ form: elicitationId ? 'url-elicitation' : 'http-403', url, elicitationId }, 'https://as.test');
      assert.deepEqual(ask(`https://as.test/approve/${id}`, id), { transactionId: id, url: `https://as.test/approve/${id}` });
      assert.deepEqual(ask(`https://as.test/approve/${id}`), { transactionId: id, url: `https://as.test/approve/${id}` });
      assert.deepEqual(checkAsk({ form: 'input-required', url: `https://as.test/tenant/approve/${id}`, elicitationId: id }, 'https://as.test/tenant/'), { transactionId: id, url: `https://as.test/tenant/approve/${id}` });
      const refused = (url: string, elicitationId: string | undefined, message: RegExp) =>
        assert.throws(() => ask(url, elicitationId), (error: unknown) => error instanceof AgentError && error.kind === 'protocol' && message.test(error.message), url);
      const notPage = /which is not an approval page of your authorization server \(\/approve\/\{id\}, no query\): not followed/;
      refused('https://as.test/authorize?client_id=evil&redirect_uri=https%3A%2F%2Fevil.test%2Fcb&response_type=code', id, notPage);
      refused(`https://as.test/approve/${id}?next=https://evil.test`, id, notPage);
      refused(`https://as.test/approve/${id}#x`, undefined, notPage);
      refused(`https://as.test/other/approve/${id}`, undefined, notPage);
      refused(`https://as.test/approve/${id}/extra`, undefined, notPage);
      refused(`https://user@as.test/approve/${id}`, undefined, notPage);
      refused('https://as.test/approve/BBBBBBBBBBBBBBBBBBBBBB', id, /names the transaction AAAAAAAAAAAAAAAAAAAAAA but links the approval page of BBBBBBBBBBBBBBBBBBBBBB: not followed/);
      refused(`https://evil.test/approve/${id}`, id, /which is not your authorization server/);
    });

    it('the plain MCP client of agent.connect(): a 403 approval answer is an ApprovalRequiredError naming the link', async () => {
      mcp.state.form = 'http-403';
      const client = await agent().connect();
      try {
        const error = await client.callTool({ name: 'transfer', arguments: { to: 'bob', amount: 250 } }).then(() => assert.fail('no result'), (e: unknown) => e);
        assert.ok(error instanceof ApprovalRequiredError);
        assert.equal(error.request.url, `${as.issuer}/approve/tx00000001`);
        assert.equal(error.request.tool, 'transfer');
      } finally {
        await client.close();
      }
    });

    it('a transaction the AS does not know for this sign-in is never shown: protocol error', async () => {
      mcp.state.form = 'http-403';
      const original = as.transactions.set.bind(as.transactions);
      as.transactions.set = (() => as.transactions) as typeof as.transactions.set; // the MCP server made it up
      try {
        let told = 0;
        const error = await agent()
          .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => void told++ })
          .then(() => assert.fail('no result'), (e: unknown) => e);
        assert.equal((error as AgentError).kind, 'protocol');
        assert.match((error as Error).message, /knows no transaction tx00000001 for your sign-in/);
        assert.equal(told, 0);
      } finally {
        as.transactions.set = original;
      }
    });

    it('stopping the wait (signal): a cancelled AgentError (exit 130), not retried', async () => {
      const stop = new AbortController();
      const error = await agent()
        .callTool('transfer', { to: 'bob', amount: 250 }, { onApproval: () => void setTimeout(() => stop.abort(), 50), signal: stop.signal })
        .then(() => assert.fail('no result'), (e: unknown) => e);
      assert.equal((error as AgentError).kind, 'cancelled');
      assert.equal((error as AgentError).exitCode, 130);
      assert.match((error as Error).message, /stopped waiting for the approval of transfer; it stays open until/);
      assert.equal(mcp.state.calls.length, 1);
    });

    it('a call that needs no approval goes straight through', async () => {
      const result = await agent().callTool('read_balance', {});
      assert.deepEqual(result.content, [{ type: 'text', text: '{"balance":"1250.00"}' }]);
      assert.equal(as.polls.length, 0);
    });
  });

  describe('the CLI: mandate agent call', () => {
    const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => agentCli([...args, '--mcp-url', mcp.url], { AGENT_CLIENT_ID: 'cli-agent', MANDATE_AGENT_HOME: home, ...extra });
    const finished = async (child: ReturnType<typeof cli>, timeoutMs = 30_000) => {
      const timer = setTimeout(() => child.child.kill('SIGKILL'), timeoutMs);
      try {
        return await child.exited;
      } finally {
        clearTimeout(timer);
      }
    };
    const transfer = ['call', 'transfer', '--args', '{"to":"bob","amount":250}'];

    it('approved: the link on stderr, a progress line, then the result on stdout (exit 0)', async () => {
      // The first look (before the link is shown) and the first poll are pending; the next says approved.
      mcp.state.decide = { afterPolls: 3, to: 'approved' };
      const child = cli(transfer);
      assert.equal(await finished(child), 0, child.err());
      assert.equal(child.out(), '{"transferred":"250.00","to":"bob"}\n');
      assert.match(child.err(), new RegExp(`^This call needs your approval: Transfer 250\\.00 EUR to bob\\n  open ${as.issuer}/approve/tx00000001\\n`));
      assert.match(child.err(), /^Waiting for your approval \(Ctrl-C to stop\), [45]:\d\d left…$/m);
      assert.match(child.err(), /^Approved: calling the tool again\.$/m);
      assert.deepEqual(mcp.state.performed, [{ to: 'bob', amount: 250 }]);
      assert.ok(as.polls.every((poll) => poll.authorization === `Bearer ${TOKEN}`));
    });

    it('--approve push: no link, the pending approvals page instead', async () => {
      mcp.state.decide = { afterPolls: 2, to: 'approved' };
      const child = cli([...transfer, '--approve', 'push']);
      assert.equal(await finished(child), 0, child.err());
      assert.match(child.err(), new RegExp(`^This call needs your approval: Transfer 250\\.00 EUR to bob\\n  approve it in your pending approvals at ${as.issuer}/approvals\\n`));
      assert.doesNotMatch(child.err(), /approve\/tx/);
      assert.equal(child.out(), '{"transferred":"250.00","to":"bob"}\n');
    });

    it('denied: exit 11, nothing on stdout, not retried', async () => {
      mcp.state.decide = { afterPolls: 2, to: 'denied' };
      const child = cli(transfer);
      assert.equal(await finished(child), 11, child.err());
      assert.equal(child.out(), '');
      assert.match(child.err(), /^mandate agent: you denied the call to transfer \(Transfer 250\.00 EUR to bob\): not made$/m);
      assert.equal(mcp.state.calls.length, 1);
    });

    it('expired: exit 12, not retried', async () => {
      mcp.state.lifetime = 1;
      const child = cli(transfer);
      assert.equal(await finished(child), 12, child.err());
      assert.match(child.err(), /^mandate agent: the approval for transfer expired before it was given: make the call again to ask anew$/m);
      assert.equal(mcp.state.calls.length, 1);
    });

    it('--no-wait: where to approve, exit 13; the same call later goes through once approved', async () => {
      const child = cli([...transfer, '--no-wait']);
      assert.equal(await finished(child), 13, child.err());
      assert.match(child.err(), /open http:\/\/127\.0\.0\.1:\d+\/approve\/tx00000001\nmandate agent: not waiting \(--no-wait\): once you have approved \(until [^)]+\), run the same call again\n$/);
      as.transactions.get('tx00000001')!.status = 'approved';
      const again = cli([...transfer, '--no-wait']);
      assert.equal(await finished(again), 0, again.err());
      assert.equal(again.out(), '{"transferred":"250.00","to":"bob"}\n');
    });

    it('Ctrl-C while waiting: a clean exit 130 saying the approval stays open', async () => {
      const child = cli(transfer);
      await child.waitFor(/Waiting for your approval/, child.err);
      child.child.kill('SIGINT');
      assert.equal(await finished(child), 130, child.err());
      assert.match(child.err(), /^mandate agent: stopped waiting for the approval of transfer; it stays open until [^:]+:\d\d:\d\d.*: once approved, make the same call again$/m);
      assert.equal(mcp.state.calls.length, 1);
    });

    it('--open opens the link the way sign-in does (xdg-open); bad --approve values are usage errors', async () => {
      const bin = join(home, 'bin');
      mkdirSync(bin, { recursive: true });
      const opened = join(home, 'opened.txt');
      writeFileSync(join(bin, 'xdg-open'), `#!/bin/sh\necho "$1" > '${opened}'\n`);
      chmodSync(join(bin, 'xdg-open'), 0o755);
      mcp.state.decide = { afterPolls: 2, to: 'approved' };
      const child = cli([...transfer, '--open'], { PATH: `${bin}:${process.env.PATH}` });
      assert.equal(await finished(child), 0, child.err());
      assert.equal(readFileSync(opened, 'utf8').trim(), `${as.issuer}/approve/tx00000001`);
      for (const bad of [['--approve', 'sms'], ['--approve', 'push', '--open']]) {
        const usage = cli([...transfer, ...bad]);
        assert.equal(await finished(usage), 2, usage.err());
      }
    });

    it('chat in a terminal: a countdown line; Ctrl-C while /call waits stops the wait, not the chat', async () => {
      const chat = agentCli(['chat', '--mcp-url', mcp.url], { AGENT_CLIENT_ID: 'cli-agent', MANDATE_AGENT_HOME: home }, { pty: true });
      try {
        await chat.waitFor(/\/exit/, chat.out);
        chat.child.stdin.write('/call transfer {"to":"bob","amount":250}\n');
        // eslint-disable-next-line no-control-regex -- the countdown rewrites its own line
        await chat.waitFor(/\r\x1b\[KWaiting for your approval \(Ctrl-C to stop\)… [45]:\d\d left/, chat.out);
        chat.child.stdin.write('\x03');
        await chat.waitFor(/stopped waiting for the approval of transfer/, chat.out);
        chat.child.stdin.write('/call read_balance {}\n');
        await chat.waitFor(/\{"balance":"1250\.00"\}/, chat.out);
        chat.child.stdin.write('/exit\n');
        assert.equal(await finished(chat), 0);
        assert.equal(mcp.state.calls.length, 1, 'not retried');
      } finally {
        if (chat.child.exitCode === null) chat.child.kill('SIGKILL');
      }
    });

    it('chat with a model: the model\'s transfer waits for the approval too, and the model gets the result', async () => {
      // An OpenAI-compatible endpoint that asks for one transfer, then repeats what the tool said.
      const model = createServer(async (req, res) => {
        const { messages } = JSON.parse(await readBody(req)) as { messages: { role: string; content: string | null }[] };
        const last = messages.at(-1)!;
        const message =
          last.role === 'tool'
            ? { role: 'assistant', content: `model saw: ${last.content}` }
            : { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'transfer', arguments: '{"to":"bob","amount":250}' } }] };
        json(res, 200, { choices: [{ message }] });
      });
      const modelUrl = await listen(model);
      try {
        mcp.state.decide = { afterPolls: 2, to: 'approved' };
        const chat = cli(['chat', '--approve', 'push'], { OPENAI_API_KEY: 'test', OPENAI_BASE_URL: modelUrl, OPENAI_MODEL: 'fake' });
        chat.child.stdin.end('send bob 250\n');
        assert.equal(await finished(chat), 0, chat.err());
        assert.match(chat.err(), /^This call needs your approval: Transfer 250\.00 EUR to bob\n/m);
        assert.match(chat.out(), /^model saw: .*transferred.*250\.00/m);
        assert.deepEqual(mcp.state.performed, [{ to: 'bob', amount: 250 }]);
        assert.equal(mcp.state.calls.length, 2);
      } finally {
        await new Promise<void>((resolve) => (model.close(() => resolve()), model.closeAllConnections()));
      }
    });

    it('chat: /call waits for the approval the same way, and the chat goes on', async () => {
      mcp.state.decide = { afterPolls: 2, to: 'approved' };
      const chat = cli(['chat', '--approve', 'push']);
      chat.child.stdin.end('/call transfer {"to":"bob","amount":250}\n/call read_balance {}\n');
      assert.equal(await finished(chat), 0, chat.err());
      assert.match(chat.err(), /approve it in your pending approvals at/);
      assert.match(chat.out(), /\{"transferred":"250\.00","to":"bob"\}\n\{"balance":"1250\.00"\}\n/);
    });
  });
});
