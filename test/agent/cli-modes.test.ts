import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import type { AuditEvent } from '../../src/store/types.ts';
import { agentCli } from '../helpers/agent-cli.ts';
import { freePort, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startFakePlatformIssuer, type FakePlatformIssuer } from '../helpers/fake-platform-issuer.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * `mandate agent` with the token modes of issue 17 (`--mode`, `--dpop`, `--idp`,
 * `--idp-client-id`, `--workload-token-file`), as the built CLI (bin/mandate.js; `npm run build`
 * first) in a child process: usage errors, the enterprise chain after one `login --idp` (two
 * Mandate ASes, the gateway requiring DPoP), and workload mode with a platform token file.
 */
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
const SECRETS = { idp: 'cli-modes-agent-at-idp-secret-0123456789ab', mcp: 'cli-modes-agent-at-mcp-secret-0123456789ab' };
const SCOPES = [{ name: 'mcp:read' }, { name: 'mcp:write' }];

const homes: string[] = [];
const freshHome = () => {
  const home = mkdtempSync(join(tmpdir(), 'mandate-cli-modes-'));
  homes.push(home);
  return home;
};
after(() => {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

/** Runs a command to its end (60 s at most). */
async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = agentCli(args, { MANDATE_AGENT_HOME: freshHome(), AGENT_CLIENT_ID: '', AGENT_SECRET: '', IDP_CLIENT_SECRET: '', ...env });
  const timer = setTimeout(() => child.child.kill('SIGKILL'), 60_000);
  try {
    return { code: await child.exited, out: child.out(), err: child.err() };
  } finally {
    clearTimeout(timer);
  }
}

describe('mandate agent: the mode flags, usage errors (exit 2, one clear line, nothing contacted)', () => {
  const cases: [string, string[], RegExp][] = [
    ['an unknown mode', ['tools', '--mode', 'sideways'], /^mandate agent: --mode is one of delegated, direct, client, enterprise, workload\n$/],
    ['an unknown DPoP setting', ['tools', '--dpop', 'sometimes'], /^mandate agent: --dpop is one of auto, always, never\n$/],
    ['--idp without --idp-client-id', ['tools', '--idp', 'https://idp.example.test', '--client-id', 'agent'], /^mandate agent: --idp needs --idp-client-id, the agent's client at the IdP \(its secret in IDP_CLIENT_SECRET, never on the command line\)\n$/],
    ['--idp-client-id without --idp', ['tools', '--idp-client-id', 'agent-at-idp'], /^mandate agent: --idp-client-id names the agent at an IdP: give the IdP too \(--idp <issuer>\)\n$/],
    ['--mode enterprise without --idp', ['tools', '--mode', 'enterprise'], /^mandate agent: enterprise mode needs the IdP: --idp <issuer> --idp-client-id <id>/],
    ['--idp that is not a URL', ['tools', '--idp', 'okta', '--idp-client-id', 'a', '--client-id', 'b'], /^mandate agent: --idp is the IdP's issuer URL, not "okta"\n$/],
    ['--idp without the agent at the MCP AS', ['tools', '--idp', 'https://idp.example.test', '--idp-client-id', 'a'], /^mandate agent: enterprise mode needs the agent's client at the MCP server's AS, which takes the ID-JAG: --client-id/],
    ['--idp with another mode', ['tools', '--mode', 'client', '--idp', 'https://idp.example.test'], /^mandate agent: --idp is for enterprise mode, not --mode client\n$/],
    ['--mode workload without the token file', ['tools', '--mode', 'workload'], /^mandate agent: workload mode needs the platform token: --workload-token-file <path>\n$/],
    ['--workload-token-file with --idp', ['tools', '--workload-token-file', '/x', '--idp', 'https://idp.example.test'], /^mandate agent: --idp \(enterprise mode\) and --workload-token-file \(workload mode\) do not go together\n$/],
    ['the IdP secret on the command line', ['tools', '--idp-client-secret', 's3cret'], /Unknown option '--idp-client-secret'/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const { code, out, err } = await run([...args, '--mcp-url', 'http://127.0.0.1:1/mcp']);
      assert.equal(code, 2, err);
      assert.equal(out, '');
      assert.match(err, message);
    });
  }

  it('the usage names every mode flag and the IdP secret variable', async () => {
    const { code, out } = await run(['--help']);
    assert.equal(code, 0);
    for (const flag of ['--mode <mode>', '--dpop <how>', '--idp <issuer>', '--idp-client-id <id>', '--workload-token-file <path>', 'IDP_CLIENT_SECRET']) assert.ok(out.includes(flag), flag);
  });
});

describe('mandate agent --idp: one sign-in at the IdP, then the ID-JAG chain without a browser', () => {
  let idp: TestAuthServer;
  let mcpAs: TestAuthServer;
  let mcpIssuer: string;
  let upstream: BankingServer;
  let gateway: TestGateway;
  let home: string;

  before(async () => {
    process.env.CLI_MODES_IDP_SECRET = SECRETS.idp;
    process.env.CLI_MODES_MCP_SECRET = SECRETS.mcp;
    const mcpPort = await freePort();
    mcpIssuer = `http://127.0.0.1:${mcpPort}`;
    upstream = await startBankingServer({ host: '127.0.0.1', port: 0 });
    gateway = await startTestGateway((url) => [
      { path: '/mcp', upstream: upstream.url, rewrite: '/', resource: `${url}/mcp`, authorization_servers: [mcpIssuer], scopes: ['mcp:read'], tools: { read_balance: {} }, identity_headers: true, dpop: { mode: 'require' } },
    ]);
    idp = await startTestAuthServer({
      dpop: { enabled: true },
      clients: [{ client_id: 'agent-at-idp', client_secret_env: 'CLI_MODES_IDP_SECRET', redirect_uris: ['http://localhost:3000/callback'], first_party: true, grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE, TOKEN_EXCHANGE] }],
      id_jag: { audiences: [{ audience: mcpIssuer, resources: [`${gateway.url}/mcp`], clients: ['agent-at-idp'], client_id: { 'agent-at-idp': 'agent-at-mcp' }, scopes: ['mcp:read'], include_email: true }] },
    });
    mcpAs = await startTestAuthServer({
      issuer: mcpIssuer,
      listen: { host: '127.0.0.1', port: mcpPort },
      dpop: { enabled: true },
      resources: [{ id: `${gateway.url}/mcp`, name: 'Banking', scopes: SCOPES }],
      clients: [{ client_id: 'agent-at-mcp', client_secret_env: 'CLI_MODES_MCP_SECRET', grant_types: [JWT_BEARER] as never }],
      trusted_idps: [{ issuer: idp.issuer, allow_loopback: true, link: { claims: ['sub' as const, 'email' as const], email_domains: ['example.com'], local_users: true } }],
    });
    home = freshHome();
  });
  after(async () => {
    await gateway?.close();
    await upstream?.close();
    await mcpAs?.close();
    await idp?.close();
  });

  const flags = () => ['--mcp-url', `${gateway.url}/mcp`, '--idp', idp.issuer, '--idp-client-id', 'agent-at-idp', '--client-id', 'agent-at-mcp', '--callback-port', '0', '--no-browser'];
  const env = () => ({ MANDATE_AGENT_HOME: home, AGENT_SECRET: SECRETS.mcp, IDP_CLIENT_SECRET: SECRETS.idp });

  it('login --idp signs in at the IdP (the only browser step); call, whoami and tools then run the chain; logout forgets the IdP sign-in', async () => {
    const login = agentCli(['login', ...flags()], env());
    try {
      const url = await login.authorizationUrl();
      assert.equal(url.origin, idp.issuer, 'the sign-in page is the IdP');
      assert.ok(!process.argv.includes(SECRETS.idp));
      await fetch(await new FormBrowser(idp.issuer).authorize(url.href));
      assert.equal(await login.exited, 0, login.err());
    } finally {
      if (login.child.exitCode === null) login.child.kill('SIGKILL');
    }
    assert.match(login.out(), new RegExp(`^Signed in at ${idp.issuer} as demo@example\\.com; \`tools\` and \`call\` with the same --idp now get ID-JAGs`));
    // What is kept: the IdP sign-in (0600), no secret.
    const file = join(home, 'credentials.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const stored = readFileSync(file, 'utf8');
    assert.ok(!stored.includes(SECRETS.idp) && !stored.includes(SECRETS.mcp));
    assert.ok((JSON.parse(stored) as { issuers: Record<string, { idp_sign_in?: { refresh_token?: string } }> }).issuers[idp.issuer]?.idp_sign_in?.refresh_token);

    const call = await run(['call', 'read_balance', ...flags()], env());
    assert.equal(call.code, 0, call.err);
    assert.match(call.out, /"balance": "1250\.00"/);
    const linked = (await mcpAs.store.users.findByUsername('demo'))!;
    assert.deepEqual([...upstream.accounts.keys()], [linked.sub]);

    const whoami = await run(['whoami', ...flags()], env());
    assert.equal(whoami.code, 0, whoami.err);
    const shown = JSON.parse(whoami.out) as Record<string, unknown>;
    assert.equal(shown.mode, 'enterprise');
    assert.equal(shown.sub, linked.sub);
    assert.equal(shown.idp, idp.issuer);
    assert.match(String((shown.cnf as { jkt?: string } | undefined)?.jkt), /^[A-Za-z0-9_-]{43}$/, 'DPoP-bound');

    const tools = await run(['tools', ...flags()], env());
    assert.equal(tools.code, 0, tools.err);
    assert.match(tools.out, /^read_balance\t/);

    const chat = agentCli(['chat', ...flags()], env());
    chat.child.stdin.end('/call read_balance {}\n');
    assert.equal(await chat.exited, 0, chat.err());
    assert.match(chat.out(), new RegExp(`^Connected to ${gateway.url}/mcp, acting for ${linked.sub} \\(enterprise mode\\): read_balance\n`));
    assert.match(chat.out(), /"balance": "1250\.00"/);

    // No browser reached the MCP AS; the IdP saw one sign-in.
    await mcpAs.ctx.audit.flush();
    await idp.ctx.audit.flush();
    const atMcp: AuditEvent[] = await mcpAs.store.audit.query({ limit: 500 });
    assert.deepEqual(atMcp.filter((e) => /^(authorize|interaction|login|consent)\./.test(e.type)), []);
    assert.equal(atMcp.filter((e) => e.type === 'token.issued' && e.data?.grant_type === JWT_BEARER).length, 4, 'call, whoami, tools, chat: one chain each (one process each)');
    assert.equal((await idp.store.audit.query({ type: 'login.succeeded', limit: 10 })).length, 1);

    const logout = await run(['logout', ...flags()], env());
    assert.equal(logout.code, 0, logout.err);
    assert.equal(logout.out, `Signed out at ${idp.issuer}.\n`);
    const after = await run(['call', 'read_balance', ...flags()], env());
    assert.equal(after.code, 7);
    assert.match(after.err, new RegExp(`^mandate agent: not signed in at the identity provider ${idp.issuer}: run \`mandate agent login --idp ${idp.issuer} --idp-client-id agent-at-idp\``));
  });

  it('login --idp --device signs in at the IdP on another device (RFC 8628); --dpop never against a route that requires DPoP: refused by the gateway (exit 7)', async () => {
    const signedIn = freshHome();
    const login = agentCli(['login', '--device', ...flags()], { ...env(), MANDATE_AGENT_HOME: signedIn });
    try {
      const [, verification, code] = await login.waitFor(/open (\S+) on any device and enter the code (\S+)/, login.err);
      assert.equal(verification, `${idp.issuer}/device`);
      const page = await new FormBrowser(idp.issuer).approveDevice(code!);
      assert.equal(page.status, 200, page.html.slice(0, 300));
      assert.equal(await login.exited, 0, login.err());
      assert.match(login.out(), new RegExp(`^Signed in at ${idp.issuer} as demo@example\\.com;`));
    } finally {
      if (login.child.exitCode === null) login.child.kill('SIGKILL');
    }
    const call = await run(['call', 'read_balance', ...flags(), '--dpop', 'never'], { ...env(), MANDATE_AGENT_HOME: signedIn });
    assert.equal(call.code, 7, call.err);
    assert.match(call.err, /^mandate agent: the MCP server does not accept the agent's token/);
    const refused = (await gateway.auditEvents()).at(-1);
    assert.equal(refused?.status, 401);
    assert.equal(refused?.decision, 'deny');
    assert.equal(refused?.rejection, 'dpop_required');
    assert.equal(refused?.reason, 'this route accepts DPoP-bound access tokens only');
  });
});

describe('mandate agent --workload-token-file: the platform identity instead of a secret', () => {
  let platform: FakePlatformIssuer;
  let as: TestAuthServer;
  let upstream: BankingServer;
  let gateway: TestGateway;
  let tokenFile: string;
  /** The AS's issuer (startTestAuthServer's `issuer` is its own port's, not an overridden one). */
  let issuer: string;
  const SA = 'system:serviceaccount:agents:reporter';

  before(async () => {
    platform = await startFakePlatformIssuer();
    upstream = await startBankingServer({ host: '127.0.0.1', port: 0 });
    const asPort = await freePort();
    issuer = `http://127.0.0.1:${asPort}`;
    gateway = await startTestGateway((url) => [{ path: '/mcp', upstream: upstream.url, rewrite: '/', resource: `${url}/mcp`, authorization_servers: [issuer], scopes: ['mcp:read'], tools: { read_balance: {} }, identity_headers: true }]);
    as = await startTestAuthServer({
      issuer,
      listen: { host: '127.0.0.1', port: asPort },
      resources: [{ id: `${gateway.url}/mcp`, name: 'Banking', scopes: SCOPES }],
      workload_identity: { issuers: [{ issuer: platform.issuer, allow_loopback: true }] },
      clients: [{ client_id: 'reporter', workload_identity: { issuer: platform.issuer, subject: SA }, grant_types: ['client_credentials'] }],
    });
    tokenFile = join(freshHome(), 'token');
  });
  after(async () => {
    await gateway?.close();
    await upstream?.close();
    await as?.close();
    await platform?.close();
  });

  const flags = () => ['--mcp-url', `${gateway.url}/mcp`, '--workload-token-file', tokenFile, '--client-id', 'reporter'];

  it('calls a tool with the token file as the client assertion (read afresh each run)', async () => {
    writeFileSync(tokenFile, `${await platform.sign({ sub: SA, aud: issuer })}\n`);
    const call = await run(['call', 'read_balance', ...flags()]);
    assert.equal(call.code, 0, call.err);
    assert.match(call.out, /"balance": "1250\.00"/);
    assert.deepEqual([...upstream.accounts.keys()], ['reporter']);
  });

  it('a platform token of another workload: refused by the AS, said as such (exit 10), the reason in the audit log', async () => {
    writeFileSync(tokenFile, await platform.sign({ sub: 'system:serviceaccount:agents:intruder', aud: issuer }));
    const call = await run(['call', 'read_balance', ...flags()]);
    assert.equal(call.code, 10, call.err);
    assert.match(call.err, /^mandate agent: the authorization server refused the workload's token \(invalid_client[:)]/);
    await as.ctx.audit.flush();
    const [failed] = await as.store.audit.query({ type: 'client.auth_failed', limit: 1 });
    assert.equal(failed?.error, 'invalid_client');
    assert.match(failed?.reason ?? '', /sub system:serviceaccount:agents:intruder is not the workload identity of reporter/);
  });
});
