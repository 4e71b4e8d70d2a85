import assert from 'node:assert/strict';
import { mcpRoute } from '../../src/config/gateway-schema.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import { Secret, TOTP } from 'otpauth';
import type { Browser, Page } from 'playwright-core';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { startAuthServer } from '../../src/auth-server/server.ts';
import { DEMO_PORTS, demoConfigs, demoGatewayEnv } from '../../src/cli/demo.ts';
import { startGateway, type GatewayHandle } from '../../src/gateway/node/server.ts';
import { agentCli } from '../helpers/agent-cli.ts';
import { basic, decodeJwt } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { launchChromium, navigating } from '../helpers/chromium.ts';
import { exchange, userToken } from '../helpers/delegation-server.ts';
import { freeDemoOffset } from '../helpers/demo.ts';
import { MCP_HEADERS, toolCall } from '../helpers/gateway.ts';
import { needsChromium } from '../helpers/services.ts';

/**
 * Issue 14 end to end, with nothing faked: the demo's own configuration (examples/demo/*.yaml, on
 * free ports and a data dir of its own), the real authorization server, the real gateway and the
 * real banking MCP server, started in this process as `mandate demo` starts them (so the test reads
 * the bank's balances and the AS's audit). The person approves in Chromium; the clients are the MCP
 * SDK client, a plain fetch on an older protocol revision, and the built `mandate agent` CLI.
 * The `demo` user enrols TOTP last: from then on the page asks for a code instead of the password.
 */
const offset = await freeDemoOffset();

describe('high-risk actions end to end (the demo configuration: real AS, gateway and bank)', needsChromium(), () => {
  let dataDir: string;
  let auth: Awaited<ReturnType<typeof startAuthServer>>;
  let bank: BankingServer;
  let gateway: GatewayHandle;
  let browser: Browser;
  let issuer: string;
  let mcpUrl: string;
  let agentSecret: string;
  let auditFile: string;
  const homes: string[] = [];

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'mandate-e2e-high-risk-'));
    const configs = await demoConfigs({ portOffset: offset, dataDir });
    // The demo allows 10 transfers a minute per user and agent, held calls included; this file makes
    // more than that within a minute (test/gateway/approval-throttle.test.ts tests the limit with approvals).
    const transfers = mcpRoute(configs.gateway.routes[0]!).rate_limits.find((limit) => limit.name === 'transfers-per-user-and-agent')!;
    assert.equal(transfers.limit, 10);
    transfers.limit = 1000;
    auth = await startAuthServer(configs.auth);
    issuer = auth.ctx.issuer;
    bank = await startBankingServer({ port: DEMO_PORTS.banking + offset });
    gateway = await startGateway(configs.gateway, { log: auth.ctx.log, env: demoGatewayEnv(configs.auth) });
    mcpUrl = `http://localhost:${DEMO_PORTS.gateway + offset}/mcp`;
    auditFile = configs.gateway.audit.file!;
    agentSecret = readFileSync(join(dataDir, 'secrets', 'sample-agent.secret'), 'utf8').trim();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await gateway?.close();
    await bank?.close();
    await auth?.close();
    for (const dir of [dataDir, ...homes]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The demo user's token at the gateway, held by the sample agent: signed in (login, agreement, consent), then exchanged. */
  const agentToken = async () => {
    const clientAuth = { authorization: basic('sample-agent', agentSecret) };
    const scope = 'banking:read banking:transfer';
    const { token } = await userToken({ issuer } as never, { clientId: 'sample-agent', redirectUri: 'http://localhost:3000/callback', resource: 'http://localhost:3000', scope, clientAuth, browser: new FormBrowser(issuer) });
    const exchanged = await exchange({ issuer } as never, { subject_token: token.access_token, resource: mcpUrl, scope }, clientAuth);
    assert.equal(exchanged.status, 200, exchanged.text);
    return exchanged.json.access_token as string;
  };
  const balanceOf = (sub: string) => bank.accounts.get(sub)?.balanceCents;

  /** The gateway's audit events so far (flushed first). */
  const gatewayAudit = async () => {
    await gateway.audit.flush();
    return readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  };
  /** The AS's audit events about one transaction, oldest first. */
  const asAudit = async (transactionId: string) => {
    await auth.ctx.audit.flush();
    const events = await auth.store.audit.list({ limit: 1000 });
    return events.filter((event) => (event.data as { transaction_id?: string } | undefined)?.transaction_id === transactionId).reverse();
  };

  /** Signs in on the sign-in form the approval pages show a browser that is not signed in. */
  const signIn = async (page: Page) => {
    assert.match(await page.locator('main').innerText(), /Sign in to review an action that waits for your approval\./);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
  };

  /**
   * The person decides in a fresh browser: opens the link (or the pending approvals page, `via`
   * a summary), signs in, checks what is shown, and approves with the password or a code, or denies.
   * Resolves with the headings seen after each submit.
   */
  const decideInChromium = async (
    url: string,
    decision: 'approve' | 'deny',
    options: { summary?: string; via?: 'link' | 'approvals'; password?: string; codes?: string[] } = {},
  ): Promise<{ headings: string[]; alerts: string[] }> => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const headings: string[] = [];
    const alerts: string[] = [];
    try {
      await navigating(page, () => page.goto(url));
      await signIn(page);
      if (options.via === 'approvals') {
        assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Pending approvals');
        await navigating(page, () => page.getByRole('link', { name: options.summary! }).click());
      }
      assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Approve this action?');
      assert.equal((await page.locator('#chain').innerText()).trim(), 'Sample agent (sample-agent) asks, acting for you.');
      if (options.summary) assert.equal(await page.locator('#summary').innerText(), options.summary);
      assert.equal(await page.locator('#tool').innerText(), 'transfer');
      assert.equal(await page.locator('#resource-name').innerText(), 'Banking (through the Mandate gateway)');
      if (decision === 'deny') {
        await navigating(page, () => page.getByRole('button', { name: 'Deny' }).click());
        headings.push(await page.getByRole('heading', { level: 1 }).innerText());
        return { headings, alerts };
      }
      const attempts = options.codes ?? [options.password ?? 'demo'];
      for (const attempt of attempts) {
        await page.getByLabel(options.codes ? 'One-time code' : 'Your password').fill(attempt);
        await navigating(page, () => page.getByRole('button', { name: 'Approve' }).click());
        headings.push(await page.getByRole('heading', { level: 1 }).innerText());
        if ((await page.getByRole('alert').count()) > 0) alerts.push(await page.getByRole('alert').innerText());
      }
      return { headings, alerts };
    } finally {
      await context.close();
    }
  };

  describe('the MCP SDK client (2025-11-25): -32042, approved in Chromium, retried', () => {
    let token: string;
    let sub: string;
    let client: Client;
    const transfer = (amount: number, to = 'bob') => client.callTool({ name: 'transfer', arguments: { to, amount } });
    /** The -32042 the SDK throws for a held call: its one URL elicitation. */
    const held = async (call: Promise<unknown>) => {
      let caught: unknown;
      try {
        await call;
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof UrlElicitationRequiredError, `UrlElicitationRequiredError, got ${String(caught)}`);
      assert.equal(caught.code, ErrorCode.UrlElicitationRequired);
      assert.equal(caught.elicitations.length, 1);
      const [elicitation] = caught.elicitations;
      assert.equal(elicitation!.mode, 'url');
      assert.equal(elicitation!.url, `${issuer}/approve/${elicitation!.elicitationId}`);
      return elicitation as { url: string; elicitationId: string; message: string };
    };

    before(async () => {
      token = await agentToken();
      sub = decodeJwt(token).sub as string;
      client = new Client({ name: 'e2e-sdk-client', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    });
    after(async () => {
      await client?.close();
    });

    it('50 EUR passes without approval; 250 EUR is held with the AS approval URL, nothing moves, a retry before the decision gets the same URL', async () => {
      const small = (await transfer(50)) as { content: { text: string }[]; isError?: boolean };
      assert.equal(small.isError, undefined, small.content[0]?.text);
      assert.equal(JSON.parse(small.content[0]!.text).transferred, '50.00');
      assert.equal(balanceOf(sub), 120_000);

      const first = await held(transfer(250));
      assert.equal(first.message, 'Transfer 250 EUR to bob');
      assert.equal(balanceOf(sub), 120_000, 'the bank received nothing');
      const again = await held(transfer(250));
      assert.equal(again.url, first.url, 'still pending: the same approval');
      const events = (await gatewayAudit()).filter((event) => event.approval_id === first.elicitationId);
      assert.deepEqual(events.map((event) => [event.decision, event.rejection, event.approval]), [['deny', 'approval_required', 'required'], ['deny', 'approval_required', 'pending']]);
      assert.ok(events.every((event) => event.sub === sub && event.tool === 'transfer' && event.status === 200));
    });

    it('approved in Chromium with the password: the retried call moves the money once; another amount is not accepted; the same call again needs a new approval', async () => {
      const elicitation = await held(transfer(250));
      const decided = await decideInChromium(elicitation.url, 'approve', { summary: 'Transfer 250 EUR to bob', codes: undefined, password: 'demo' });
      assert.deepEqual(decided.headings, ['Approved']);

      // Another amount, with the 250 approved: another action, held for its own approval; nothing moves.
      const other = await held(transfer(260));
      assert.notEqual(other.elicitationId, elicitation.elicitationId);
      assert.equal(other.message, 'Transfer 260 EUR to bob');
      const otherRecipient = await held(transfer(250, 'mallory'));
      assert.notEqual(otherRecipient.elicitationId, elicitation.elicitationId);
      assert.equal(balanceOf(sub), 120_000);

      const result = (await transfer(250)) as { content: { text: string }[]; isError?: boolean };
      assert.equal(result.isError, undefined, result.content[0]?.text);
      assert.deepEqual(JSON.parse(result.content[0]!.text), { transferred: '250.00', to: 'bob', balance: '950.00', transaction: 3, performed_by: 'sample-agent' });
      assert.equal(balanceOf(sub), 95_000);

      const replay = await held(transfer(250));
      assert.notEqual(replay.elicitationId, elicitation.elicitationId, 'a new transaction');
      assert.equal(balanceOf(sub), 95_000, 'the money moved once');

      // The gateway's audit lines: held (the approval id), then forwarded once with it.
      const lines = (await gatewayAudit()).filter((event) => event.approval_id === elicitation.elicitationId);
      const granted = lines.filter((event) => event.approval === 'granted');
      assert.equal(granted.length, 1);
      assert.equal(granted[0]!.decision, 'allow');
      assert.equal(granted[0]!.upstream_status, 200);
      // The actor profile (draft-mcguinness-oauth-actor-profile): the agent, its client and its kind.
      assert.deepEqual(granted[0]!.act, [{ sub: 'sample-agent', client_id: 'sample-agent', sub_profile: 'ai_agent', iss: issuer }]);
      assert.equal(lines[0]!.rejection, 'approval_required');
      // The AS's: created; the two retries before the decision refused as pending (held, nothing spent);
      // approved with the password; used once.
      const events = await asAudit(elicitation.elicitationId);
      assert.deepEqual(events.map((event) => [event.type, event.error]), [
        ['transaction.created', undefined],
        ['transaction.refused', 'transaction_pending'],
        ['transaction.refused', 'transaction_pending'],
        ['transaction.approved', undefined],
        ['transaction.used', undefined],
      ]);
      assert.equal((events[3]!.data as { decided_how?: string }).decided_how, 'password');
      assert.ok(events.every((event) => event.sub === sub && event.clientId === 'sample-agent'));
    });

    it('denied in Chromium: the retried call is refused (403, approval_denied) and the next one asks anew', async () => {
      const elicitation = await held(transfer(400));
      const decided = await decideInChromium(elicitation.url, 'deny', { summary: 'Transfer 400 EUR to bob' });
      assert.deepEqual(decided.headings, ['Denied']);
      await assert.rejects(transfer(400), (error: { code?: number; message?: string }) => error.code === 403 && /the approval of this call was denied/.test(String(error.message)));
      assert.equal(balanceOf(sub), 95_000);
      const refusal = (await gatewayAudit()).find((event) => event.approval_id === elicitation.elicitationId && event.approval === 'refused')!;
      assert.equal(refusal.status, 403);
      assert.equal(refusal.rejection, 'approval_denied');
      assert.match(String(refusal.reason), new RegExp(`transaction ${elicitation.elicitationId}: transaction_denied`));
      const events = await asAudit(elicitation.elicitationId);
      assert.deepEqual(events.map((event) => event.type), ['transaction.created', 'transaction.denied', 'transaction.refused']);
      assert.equal(events[2]!.error, 'transaction_denied');
      const next = await held(transfer(400));
      assert.notEqual(next.elicitationId, elicitation.elicitationId);
    });
  });

  it('a client on MCP 2025-06-18 (plain fetch): 403 with WWW-Authenticate and approval_uri; after approval the same call passes once', async () => {
    const token = await agentToken();
    const sub = decodeJwt(token).sub as string;
    const post = async (id: number) => {
      const response = await fetch(mcpUrl, {
        method: 'POST',
        headers: { ...MCP_HEADERS, 'mcp-protocol-version': '2025-06-18', authorization: `Bearer ${token}` },
        body: JSON.stringify(toolCall('transfer', { to: 'carol', amount: 150 }, id)),
      });
      return { status: response.status, challenge: response.headers.get('www-authenticate'), body: (await response.json()) as { error?: { code: number; message: string; data?: { approval_uri?: string } }; result?: { content: { text: string }[] } } };
    };
    const before = balanceOf(sub) ?? 125_000;
    const first = await post(1);
    assert.equal(first.status, 403);
    const uri = /approval_uri="([^"]+)"/.exec(first.challenge ?? '')?.[1];
    assert.ok(uri, first.challenge ?? 'no WWW-Authenticate');
    assert.match(first.challenge!, /^Bearer error="insufficient_authorization", approval_uri="/);
    assert.equal(uri.startsWith(`${issuer}/approve/`), true, uri);
    assert.equal(first.body.error?.data?.approval_uri, uri);
    assert.match(first.body.error!.message, /This call needs your approval: open .+, approve, then make the same call again/);

    assert.deepEqual((await decideInChromium(uri, 'approve', { summary: 'Transfer 150 EUR to carol' })).headings, ['Approved']);
    const retried = await post(2);
    assert.equal(retried.status, 200, JSON.stringify(retried.body));
    assert.equal(JSON.parse(retried.body.result!.content[0]!.text).transferred, '150.00');
    assert.equal(balanceOf(sub), before - 15_000);
    const replay = await post(3);
    assert.equal(replay.status, 403);
    assert.notEqual(/approval_uri="([^"]+)"/.exec(replay.challenge ?? '')?.[1], uri, 'a new approval');
    assert.equal(balanceOf(sub), before - 15_000, 'once');
  });

  it('two identical retries at once after one approval: the money moves exactly once (the AS spends the approval atomically)', async () => {
    const token = await agentToken();
    const sub = decodeJwt(token).sub as string;
    const post = async (id: number) => {
      const response = await fetch(mcpUrl, {
        method: 'POST',
        headers: { ...MCP_HEADERS, 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` },
        body: JSON.stringify(toolCall('transfer', { to: 'oscar', amount: 175 }, id)),
      });
      return { status: response.status, body: (await response.json()) as { error?: { code: number; message: string; data?: { elicitations?: { url: string; elicitationId: string }[] } }; result?: { content: { text: string }[] } } };
    };
    const first = await post(1);
    const elicitation = first.body.error!.data!.elicitations![0]!;
    assert.deepEqual((await decideInChromium(elicitation.url, 'approve', { summary: 'Transfer 175 EUR to oscar' })).headings, ['Approved']);
    const before = balanceOf(sub) ?? 125_000;
    const both = await Promise.all([post(2), post(3)]);
    const passed = both.filter((answer) => answer.status === 200 && answer.body.result);
    assert.equal(passed.length, 1, JSON.stringify(both));
    assert.equal(balanceOf(sub), before - 17_500, 'once');
    // The other was refused (the approval used) or, if it came after the first had forgotten the held call, held anew.
    const other = both.find((answer) => answer !== passed[0])!;
    assert.ok(other.status === 403 ? /already been used/.test(other.body.error!.message) : other.body.error?.code === -32042, JSON.stringify(other));
    const events = await asAudit(elicitation.elicitationId);
    assert.equal(events.filter((event) => event.type === 'transaction.used').length, 1);
  });

  it("another account cannot decide the demo user's transfer: the admin signed in gets 403 and sees nothing of it (audited); it stays pending", async () => {
    const token = await agentToken();
    const held = await fetch(mcpUrl, {
      method: 'POST',
      headers: { ...MCP_HEADERS, 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}` },
      body: JSON.stringify(toolCall('transfer', { to: 'grace', amount: 700 }, 1)),
    });
    const { error } = (await held.json()) as { error: { code: number; data: { elicitations: { url: string; elicitationId: string }[] } } };
    assert.equal(error.code, -32042);
    const [{ url, elicitationId }] = error.data.elicitations as [{ url: string; elicitationId: string }];
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await navigating(page, () => page.goto(url));
      await page.getByLabel('Username').fill('admin');
      await page.getByLabel('Password').fill(readFileSync(join(dataDir, 'secrets', 'admin.password'), 'utf8').trim());
      const response = page.waitForResponse((r) => r.url() === url);
      await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
      assert.equal((await response).status(), 403);
      const text = await page.locator('main').innerText();
      assert.match(text, /This request belongs to another account\. You are signed in as admin/);
      assert.doesNotMatch(text, /grace|700/, 'nothing of the request shown');
      assert.equal(await page.getByRole('button', { name: 'Approve' }).count(), 0);
    } finally {
      await context.close();
    }
    const events = await asAudit(elicitationId);
    assert.deepEqual(events.map((event) => event.type), ['transaction.created', 'transaction.refused']);
    const admin = await auth.store.users.findByUsername('admin');
    assert.equal(events[1]!.sub, admin!.sub, 'the signed-in account, not the owner');
    assert.match(String(events[1]!.reason), /^approval page: opened by admin \(sub=.+\); the transaction is of sub=/);
    assert.equal(events[1]!.error, 'access_denied');
    const state = await fetch(`${issuer}/transactions/${elicitationId}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(((await state.json()) as { status: string }).status, 'pending');
  });

  describe('`mandate agent call transfer` (the built CLI), signed in as the sample agent', () => {
    let env: NodeJS.ProcessEnv;
    const cli = (args: string[]) => agentCli([args[0]!, '--mcp-url', mcpUrl, ...args.slice(1)], env);
    const finished = async (run: ReturnType<typeof cli>) => {
      // A CLI that never ends would hold the test file until its own timeout: stop it once the assertions ran.
      try {
        return await run.exited;
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    };

    before(async () => {
      const home = mkdtempSync(join(tmpdir(), 'mandate-e2e-agent-'));
      homes.push(home);
      env = { AGENT_CLIENT_ID: 'sample-agent', AGENT_SECRET: agentSecret, MANDATE_AGENT_HOME: home };
      const login = cli(['login', '--callback-port', '0', '--no-browser', '--scope', 'banking:read banking:transfer']);
      try {
        const url = await login.authorizationUrl();
        await fetch(await new FormBrowser(issuer).authorize(url.href));
        assert.equal(await login.exited, 0, login.err());
      } finally {
        if (login.child.exitCode === null) login.child.kill('SIGKILL');
      }
    });

    it('--approve browser (the default): prints the approval link, waits, and prints the result once approved in Chromium (exit 0)', async () => {
      const run = cli(['call', 'transfer', '--args', '{"to":"bob","amount":250}']);
      try {
        const [, url] = await run.waitFor(/This call needs your approval: .*\n\s+open (\S+)/, run.err);
        assert.equal(url!.startsWith(`${issuer}/approve/`), true, url);
        assert.match(run.err(), /Transfer 250 EUR to bob/);
        assert.equal(run.out(), '', 'stdout is kept for the result');
        assert.deepEqual((await decideInChromium(url!, 'approve', { summary: 'Transfer 250 EUR to bob' })).headings, ['Approved']);
        assert.equal(await finished(run), 0, run.err());
        const result = JSON.parse(run.out()) as Record<string, unknown>;
        assert.equal(result.transferred, '250.00');
        assert.equal(result.performed_by, 'sample-agent');
        const id = url!.split('/').pop()!;
        const granted = (await gatewayAudit()).filter((event) => event.approval_id === id && event.approval === 'granted');
        assert.equal(granted.length, 1);
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    });

    it('--approve push: no link, approved among the pending approvals at <issuer>/approvals in Chromium (exit 0)', async () => {
      const run = cli(['call', 'transfer', '--args', '{"to":"dave","amount":120}', '--approve', 'push']);
      try {
        const [, page] = await run.waitFor(/approve it in your pending approvals at (\S+)/, run.err);
        assert.equal(page, `${issuer}/approvals`);
        assert.doesNotMatch(run.err(), /\/approve\//, 'no link to follow');
        assert.deepEqual((await decideInChromium(page!, 'approve', { via: 'approvals', summary: 'Transfer 120 EUR to dave' })).headings, ['Approved']);
        assert.equal(await finished(run), 0, run.err());
        assert.equal((JSON.parse(run.out()) as Record<string, unknown>).transferred, '120.00');
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    });

    it('--no-wait: says where to approve and exits 13; once approved, the same command again makes the call (exit 0)', async () => {
      const args = ['call', 'transfer', '--args', '{"to":"heidi","amount":130}'];
      const first = cli([...args, '--no-wait']);
      assert.equal(await finished(first), 13, first.err());
      const url = /\n\s+open (\S+)/.exec(first.err())?.[1];
      assert.ok(url, first.err());
      assert.match(first.err(), /not waiting \(--no-wait\): once you have approved.*, run the same call again/);
      assert.deepEqual((await decideInChromium(url, 'approve', { summary: 'Transfer 130 EUR to heidi' })).headings, ['Approved']);
      const again = cli([...args, '--no-wait']);
      assert.equal(await finished(again), 0, again.err());
      assert.equal((JSON.parse(again.out()) as Record<string, unknown>).transferred, '130.00');
      const id = url.split('/').pop()!;
      assert.deepEqual((await asAudit(id)).map((event) => event.type), ['transaction.created', 'transaction.approved', 'transaction.used']);
    });

    it('denied in Chromium: exit 11, nothing on stdout, nothing moved', async () => {
      const run = cli(['call', 'transfer', '--args', '{"to":"eve","amount":999}']);
      try {
        const [, url] = await run.waitFor(/\n\s+open (\S+)/, run.err);
        assert.deepEqual((await decideInChromium(url!, 'deny', { summary: 'Transfer 999 EUR to eve' })).headings, ['Denied']);
        assert.equal(await finished(run), 11, run.err());
        assert.equal(run.out(), '');
        assert.match(run.err(), /you denied the call to transfer \(Transfer 999 EUR to eve\): not made/);
        const id = url!.split('/').pop()!;
        assert.deepEqual((await asAudit(id)).map((event) => event.type), ['transaction.created', 'transaction.denied']);
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    });
  });

  it('an approval that lapses (the AS clock moved past the 300 s lifetime): the approved retry is refused as expired, and the waiting CLI exits 12', async () => {
    const token = await agentToken();
    const client = new Client({ name: 'e2e-expiry', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    const realNow = auth.ctx.now;
    try {
      const transfer = () => client.callTool({ name: 'transfer', arguments: { to: 'judy', amount: 111 } });
      let elicitation: { url: string; elicitationId: string } | undefined;
      await assert.rejects(transfer(), (error: unknown) => {
        elicitation = (error as UrlElicitationRequiredError).elicitations?.[0] as typeof elicitation;
        return error instanceof UrlElicitationRequiredError;
      });
      assert.deepEqual((await decideInChromium(elicitation!.url, 'approve', { summary: 'Transfer 111 EUR to judy' })).headings, ['Approved']);
      // The person approved in time; the agent comes back after the lifetime (the token, 15 min, still valid).
      auth.ctx.now = () => realNow() + 301;
      await assert.rejects(transfer(), (error: { code?: number; message?: string }) => error.code === 403 && /expired before it was used/.test(String(error.message)));
      const refusal = (await gatewayAudit()).find((event) => event.approval_id === elicitation!.elicitationId && event.approval === 'refused')!;
      assert.equal(refusal.rejection, 'approval_expired');
      const events = await asAudit(elicitation!.elicitationId);
      assert.deepEqual(events.map((event) => [event.type, event.error]), [['transaction.created', undefined], ['transaction.approved', undefined], ['transaction.refused', 'transaction_expired']]);
      auth.ctx.now = realNow;

      // The CLI waiting for an approval that lapses meanwhile.
      const home = mkdtempSync(join(tmpdir(), 'mandate-e2e-agent-expiry-'));
      homes.push(home);
      const env = { AGENT_CLIENT_ID: 'sample-agent', AGENT_SECRET: agentSecret, MANDATE_AGENT_HOME: home };
      const login = agentCli(['login', '--mcp-url', mcpUrl, '--callback-port', '0', '--no-browser', '--scope', 'banking:read banking:transfer'], env);
      await fetch(await new FormBrowser(issuer).authorize((await login.authorizationUrl()).href));
      assert.equal(await login.exited, 0, login.err());
      const run = agentCli(['call', '--mcp-url', mcpUrl, 'transfer', '--args', '{"to":"judy","amount":112}'], env);
      try {
        await run.waitFor(/\n\s+open (\S+)/, run.err);
        auth.ctx.now = () => realNow() + 301;
        assert.equal(await run.exited, 12, run.err());
        assert.match(run.err(), /the approval for transfer expired before it was given: make the call again to ask anew/);
        assert.equal(run.out(), '');
      } finally {
        if (run.child.exitCode === null) run.child.kill('SIGKILL');
      }
    } finally {
      auth.ctx.now = realNow;
      await client.close();
    }
  });

  it('TOTP: the demo user enrols at /account/security; the approval page then asks for the code, refuses a wrong one (audited) and approves with a valid one', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    let secret: string;
    try {
      await navigating(page, () => page.goto(`${issuer}/account/security`));
      await page.getByLabel('Username').fill('demo');
      await page.getByLabel('Password').fill('demo');
      await navigating(page, () => page.getByRole('button', { name: 'Sign in' }).click());
      assert.equal(new URL(page.url()).pathname, '/account/security');
      await page.getByLabel('Your password, to confirm it is you').fill('demo');
      await navigating(page, () => page.getByRole('button', { name: 'Set up' }).click());
      secret = (await page.locator('#totp-secret').innerText()).replace(/ /g, '');
      await page.getByLabel('Code from the app').fill(TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: Date.now() }));
      await navigating(page, () => page.getByRole('button', { name: 'Confirm' }).click());
      assert.equal(await page.locator('#account-notice').innerText(), 'Your authenticator app is set up.');
    } finally {
      await context.close();
    }

    const token = await agentToken();
    const sub = decodeJwt(token).sub as string;
    const client = new Client({ name: 'e2e-totp', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    try {
      const transfer = () => client.callTool({ name: 'transfer', arguments: { to: 'frank', amount: 101 } });
      let elicitation: { url: string; elicitationId: string } | undefined;
      await assert.rejects(transfer(), (error: unknown) => {
        elicitation = (error as UrlElicitationRequiredError).elicitations?.[0] as typeof elicitation;
        return error instanceof UrlElicitationRequiredError;
      });
      // The enrolment used the current time step; the app's next code (RFC 6238 allows one step of drift) is a fresh one.
      const next = TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30, timestamp: Date.now() + 30_000 });
      const wrong = next === '000000' ? '111111' : '000000';
      const decided = await decideInChromium(elicitation!.url, 'approve', { summary: 'Transfer 101 EUR to frank', codes: [wrong, next] });
      assert.deepEqual(decided.headings, ['Approve this action?', 'Approved']);
      assert.deepEqual(decided.alerts, ['Wrong code. Nothing was approved.']);
      const before = balanceOf(sub) ?? 125_000;
      const result = (await transfer()) as { content: { text: string }[] };
      assert.equal(JSON.parse(result.content[0]!.text).transferred, '101.00');
      assert.equal(balanceOf(sub), before - 10_100);

      const events = await asAudit(elicitation!.elicitationId);
      assert.deepEqual(events.map((event) => event.type), ['transaction.created', 'transaction.refused', 'transaction.approved', 'transaction.used']);
      assert.equal(events[1]!.reason, 'approval page: wrong one-time code');
      assert.equal(events[1]!.error, 'access_denied');
      assert.equal((events[2]!.data as { decided_how?: string }).decided_how, 'totp');
      await auth.ctx.audit.flush();
      const totpRefused = (await auth.store.audit.list({ limit: 1000 })).find((event) => event.type === 'totp.refused' && event.sub === sub);
      assert.equal(totpRefused?.reason, 'wrong code');
    } finally {
      await client.close();
    }
  });
});
