import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startBankingServer } from '../../examples/banking/server.ts';
import { main } from '../../src/cli/main.ts';
import { adminAccess } from '../helpers/admin.ts';
import { agentCli } from '../helpers/agent-cli.ts';
import { startTestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { startTestGateway } from '../helpers/gateway.ts';

/**
 * Issue 12, "CLI polish": `mandate agent` as a person (and a script) meets it, as a child process
 * against an AS and a gateway in front of the banking MCP server. The sign-ins are completed by
 * the form-driving browser (demo/demo, allow).
 */

const AGENT_RESOURCE = 'https://agent.example.test';
const BANKING = [{ name: 'banking:read' }, { name: 'banking:transfer' }];
const SECRET = 'cli-agent-secret-0123456789abcdef0123456';
const BIN = new URL('../../bin/mandate.js', import.meta.url).pathname;

/** Runs main() in this process, its stdout and stderr collected. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const write = { out: process.stdout.write, err: process.stderr.write };
  // The CLI writes strings; the test runner's own reports (Buffers) pass through.
  process.stdout.write = ((chunk: unknown, ...rest: never[]) => (typeof chunk === 'string' ? ((out += chunk), true) : write.out.call(process.stdout, chunk as Buffer, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown, ...rest: never[]) => (typeof chunk === 'string' ? ((err += chunk), true) : write.err.call(process.stderr, chunk as Buffer, ...rest))) as typeof process.stderr.write;
  try {
    return { code: await main(argv), out, err };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}

describe('mandate help: asking is not a mistake', () => {
  it('`mandate --help` (a real process) exits 0 with the usage on stdout', async () => {
    const child = spawn(process.execPath, [BIN, '--help']);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0);
    assert.match(out, /^mandate — identity for AI agents/);
  });

  it('-h, help, and each command\'s --help exit 0 on stdout; the agent command has its own usage', async () => {
    for (const argv of [['-h'], ['help'], ['serve', '--help'], ['keys', '-h'], ['hash-password', '--help'], ['demo', 'help']]) {
      const { code, out, err } = await run(argv);
      assert.equal(code, 0, `mandate ${argv.join(' ')}`);
      assert.match(out, /^mandate — identity for AI agents/, `mandate ${argv.join(' ')}`);
      assert.equal(err, '');
    }
    for (const argv of [['agent', '--help'], ['agent', '-h'], ['agent', 'help'], ['agent', 'call', '--help']]) {
      const { code, out, err } = await run(argv);
      assert.equal(code, 0, `mandate ${argv.join(' ')}`);
      assert.match(out, /^mandate agent — the sample AI agent/, `mandate ${argv.join(' ')}`);
      assert.equal(err, '');
    }
  });

  it('an unknown command, or none, is a usage error: exit 2, usage on stderr', async () => {
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /^unknown command: frobnicate/);
    const agentUnknown = await run(['agent', 'frobnicate']);
    assert.equal(agentUnknown.code, 2);
    assert.match(agentUnknown.err, /^mandate agent: unknown command frobnicate/);
    const agentNone = await run(['agent']);
    assert.equal(agentNone.code, 2);
    assert.equal(agentNone.out, '');
    assert.match(agentNone.err, /^mandate agent — the sample AI agent/);
  });
});

describe('mandate agent against an AS and a gateway', () => {
  let as: Awaited<ReturnType<typeof startTestAuthServer>>;
  let upstream: Awaited<ReturnType<typeof startBankingServer>>;
  let gateway: Awaited<ReturnType<typeof startTestGateway>>;
  let mcpUrl: string;
  let env: NodeJS.ProcessEnv;
  const homes: string[] = [];

  before(async () => {
    process.env.TEST_CLI_AGENT_SECRET = SECRET;
    as = await startTestAuthServer({
      agents: [{ client_id: 'cli-agent', client_name: 'CLI agent', client_secret_env: 'TEST_CLI_AGENT_SECRET', redirect_uris: ['http://localhost:3000/callback'], owner: 'demo' }],
      resources: [{ id: AGENT_RESOURCE, name: 'The agent', scopes: BANKING, may_act: 'requesting_client' }] as never,
    });
    upstream = await startBankingServer({ host: '127.0.0.1', port: 0 });
    gateway = await startTestGateway((url) => [
      {
        path: '/mcp',
        upstream: upstream.url,
        rewrite: '/',
        resource: `${url}/mcp`,
        authorization_servers: [as.issuer],
        tools: {
          read_balance: { scopes: ['banking:read'] },
          transfer: { scopes: ['banking:transfer'] },
          list_transactions: { scopes: ['banking:read'], allow: 'false', reason: 'closed in this test' },
        },
        unlisted_tools: 'deny',
        identity_headers: true,
      },
    ]);
    mcpUrl = `${gateway.url}/mcp`;
    const created = await (await adminAccess(as)).api('POST', '/resources', { definition: { id: mcpUrl, name: 'Banking', scopes: BANKING, exchange: { max_depth: 1 } } });
    assert.equal(created.status, 201, created.text);
    const home = mkdtempSync(join(tmpdir(), 'mandate-agent-cli-'));
    homes.push(home);
    env = { AGENT_CLIENT_ID: 'cli-agent', AGENT_SECRET: SECRET, MANDATE_AGENT_HOME: home };
  });
  after(async () => {
    await gateway?.close();
    await upstream?.close();
    await as?.close();
    for (const dir of homes) rmSync(dir, { recursive: true, force: true });
  });

  const options = () => ['--mcp-url', mcpUrl, '--agent-resource', AGENT_RESOURCE, '--callback-port', '0', '--no-browser'];
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => agentCli([...args, ...options()], { ...env, ...extra });
  /** Runs a command that signs in; the form browser completes the sign-in. */
  const withSignIn = async (args: string[], extra: NodeJS.ProcessEnv = {}) => {
    const child = cli(args, extra);
    try {
      const url = await child.authorizationUrl();
      await fetch(await new FormBrowser(as.issuer).authorize(url.href));
      return { code: await child.exited, out: child.out(), err: child.err(), url };
    } finally {
      if (child.child.exitCode === null) child.child.kill('SIGKILL');
    }
  };
  const finished = async (child: ReturnType<typeof cli>, timeoutMs = 60_000) => {
    const timer = setTimeout(() => child.child.kill('SIGKILL'), timeoutMs);
    try {
      return await child.exited;
    } finally {
      clearTimeout(timer);
    }
  };

  it('a wrong AGENT_SECRET is found before the person is sent to sign in: exit 5, no sign-in URL', async () => {
    const home = mkdtempSync(join(tmpdir(), 'mandate-agent-cli-wrong-'));
    homes.push(home);
    const child = cli(['login', '--scope', 'banking:read'], { AGENT_SECRET: 'not-the-secret-0123456789abcdef0123456', MANDATE_AGENT_HOME: home });
    // Before the check, the URL was printed and the agent waited (5 min) for a sign-in it could not use.
    for (let waited = 0; waited < 60_000 && child.child.exitCode === null && !/open this URL/.test(child.err()); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.doesNotMatch(child.err(), /open this URL/, 'the person is not sent to sign in');
    assert.equal(await finished(child), 5, child.err());
    assert.equal(
      child.err(),
      `mandate agent: the authorization server at ${as.issuer} did not accept the agent's credentials (invalid_client: client authentication failed): is AGENT_SECRET the secret of cli-agent? — checked before the sign-in, so nothing was signed in\n`,
    );
  });

  it('login names the person (the ID token\'s name and username, not the subject id); whoami too', async () => {
    const login = await withSignIn(['login', '--scope', 'banking:read']);
    assert.equal(login.code, 0, login.err);
    assert.equal(login.url.searchParams.get('scope'), 'openid profile offline_access banking:read', 'asks for the ID token that names the person, and offline_access (the AS lists it: SEP-2207)');
    assert.equal(login.out, `Signed in as Demo User (demo); cli-agent may act for you at ${mcpUrl} with banking:read.\n`);
    const whoami = cli(['whoami']);
    assert.equal(await finished(whoami), 0, whoami.err());
    const shown = JSON.parse(whoami.out()) as Record<string, unknown>;
    assert.equal(shown.user, 'Demo User (demo)');
    assert.equal(shown.username, 'demo');
    assert.equal(shown.name, 'Demo User');
    assert.match(String(shown.sub), /^[0-9a-f-]{36}$/, 'the subject id is still there, for scripts');
    // The OpenID Connect scopes stay on the sign-in: the exchange asks the MCP resource for its own only.
    const call = cli(['call', 'read_balance']);
    assert.equal(await finished(call), 0, call.err());
    assert.deepEqual(JSON.parse(call.out()), { balance: '1250.00', currency: 'EUR' });
  });

  it('chat reads piped input line by line: every line is handled, and the end of the input ends it (exit 0)', async () => {
    const chat = cli(['chat']);
    // Both lines in one write, then EOF: as `printf … | mandate agent chat` sends them.
    chat.child.stdin.end('/call read_balance {}\n/tools\n');
    assert.equal(await finished(chat, 60_000), 0, `stdout: ${chat.out()}\nstderr: ${chat.err()}`);
    assert.match(chat.out(), /^Connected to .*, acting for Demo User \(demo\): /m);
    assert.match(chat.out(), /"balance": "1250.00"/, 'the first line');
    assert.match(chat.out(), /^ {2}read_balance {2}The user's account balance\.$/m, 'the second line');
  });

  it('chat in a terminal still prompts and answers line by line', async () => {
    const chat = agentCli(['chat', ...options()], env, { pty: true });
    try {
      await chat.waitFor(/\/exit/, chat.out);
      chat.child.stdin.write('/tools\n');
      await chat.waitFor(/read_balance\s+The user's account balance/, chat.out);
      chat.child.stdin.write('/call read_balance {}\n');
      await chat.waitFor(/"balance": "1250.00"/, chat.out);
      chat.child.stdin.write('/exit\n');
      assert.equal(await finished(chat), 0);
    } finally {
      if (chat.child.exitCode === null) chat.child.kill('SIGKILL');
    }
  });

  it('login --device names the person too', async () => {
    const home = mkdtempSync(join(tmpdir(), 'mandate-agent-cli-device-'));
    homes.push(home);
    const device = cli(['login', '--device', '--scope', 'banking:read'], { MANDATE_AGENT_HOME: home });
    try {
      const code = (await device.waitFor(/enter the code (\S+)/, device.err))[1]!;
      const page = await new FormBrowser(as.issuer).approveDevice(code);
      assert.equal(page.status, 200, page.html.slice(0, 300));
      assert.equal(await finished(device), 0, device.err());
      assert.equal(device.out(), `Signed in as Demo User (demo); cli-agent may act for you at ${mcpUrl} with banking:read.\n`);
    } finally {
      if (device.child.exitCode === null) device.child.kill('SIGKILL');
    }
  });

  it('a tool that does not exist is named as such (exit 2); a tool the policy refuses is a refusal (exit 10)', async () => {
    const missing = cli(['call', 'read_balanse']);
    assert.equal(await finished(missing), 2, missing.err());
    assert.equal(missing.err(), `mandate agent: no tool named read_balanse at ${mcpUrl} — \`mandate agent tools\` lists the tools you may call there\n`);
    const refused = cli(['call', 'list_transactions']);
    assert.equal(await finished(refused), 10, refused.err());
    assert.equal(refused.err(), 'mandate agent: the MCP server refused the call: the call to tool list_transactions was refused by the gateway policy\n');
  });

  it('step-up says which tool needs which scope before sending the person to sign in again', async () => {
    const run = await withSignIn(['call', 'transfer', '--args', '{"to":"bob","amount":5}']);
    assert.equal(run.code, 0, run.err);
    const [why, url] = run.err.split('\n');
    assert.equal(why, 'The tool transfer needs scope banking:transfer, which you have not allowed the agent yet: sign in again to allow it.');
    assert.match(url!, /open this URL in a browser:/);
    assert.match(run.url.searchParams.get('scope')!, /banking:read banking:transfer/);
    assert.equal(JSON.parse(run.out).transferred, '5.00');
  });

  it('a revoked access token of a sign-in that can still be refreshed: refreshed, and the call goes through', async () => {
    const file = join(env.MANDATE_AGENT_HOME!, 'credentials.json');
    const stored = () => (JSON.parse(readFileSync(file, 'utf8')) as { issuers: Record<string, { subject: Record<string, { access_token: string }> }> }).issuers[as.issuer]!.subject[mcpUrl]!.access_token;
    const revoked = stored();
    const basic = `Basic ${Buffer.from(`cli-agent:${SECRET}`).toString('base64')}`;
    const answer = await fetch(`${as.issuer}/revoke`, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: revoked, token_type_hint: 'access_token' }) });
    assert.equal(answer.status, 200);
    const call = cli(['call', 'read_balance']);
    assert.equal(await finished(call), 0, call.err());
    assert.notEqual(stored(), revoked, 'the refreshed sign-in is kept');
  });

  it('after an agent is disabled and enabled again, its old sign-in asks for a new one (exit 7), not a protocol error (9)', async () => {
    const patch = async (enabled: boolean) => assert.equal((await (await adminAccess(as)).api('PATCH', '/agents/cli-agent', { enabled })).status, 200);
    await patch(false);
    // While it is disabled, a login says so before the person is sent to sign in.
    const home = mkdtempSync(join(tmpdir(), 'mandate-agent-cli-disabled-'));
    homes.push(home);
    const refused = cli(['login', '--scope', 'banking:read'], { MANDATE_AGENT_HOME: home });
    assert.equal(await finished(refused), 5, refused.err());
    assert.equal(refused.err(), `mandate agent: cli-agent is disabled or has expired at ${as.issuer}: an administrator can enable it again — checked before the sign-in, so nothing was signed in\n`);
    await patch(true);
    // Past the second of re-enabling, whose tokens the cut-off still covers.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const call = cli(['call', 'read_balance']);
    assert.equal(await finished(call), 7, call.err());
    assert.match(call.err(), /^mandate agent: the authorization server no longer accepts your sign-in for .*: sign in again with `mandate agent login`\n$/);
    const again = await withSignIn(['login', '--scope', 'banking:read']);
    assert.equal(again.code, 0, again.err);
    const works = cli(['call', 'read_balance']);
    assert.equal(await finished(works), 0, works.err());
  });
});
