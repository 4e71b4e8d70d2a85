import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { freePort } from '../helpers/auth-server.ts';
import { launchChromium, navigating } from '../helpers/chromium.ts';
import { INSPECTOR_LAUNCHER, INSPECTOR_NODE, needsInspector, needsInspectorAndChromium } from '../helpers/inspector-cli.ts';
import { freeDemoOffset, startDemo, type RunningDemo } from '../helpers/demo.ts';
import { movePorts, outputPattern, README_PORTS, rewriteBlock, shellBlocks, type ShellBlock } from './readme-blocks.ts';

/**
 * The README is true step by step: its shell blocks run in order, in one bash (`set -euo
 * pipefail`, shell variables carried from block to block), against a demo this test starts on free
 * ports with a temporary data dir and HOME. Each block must exit 0 within its time, print what an
 * `output` block after it shows, and sign-ins a person would do in a browser are done over HTTP
 * (readme-blocks.ts says how blocks are marked).
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const BLOCK_TIMEOUT_MS = 120_000;

/**
 * `curl -s` exits 0 on a 400 or 401, so a broken step would pass unseen: in the test, a curl that
 * does not show the status itself (`-i`, `-w`, `-f`) fails on an HTTP error. Those that show it
 * are followed in the README by the output they print.
 */
const CURL_FAILS_ON_HTTP_ERRORS = `curl() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --fail|--fail-with-body|--include|--write-out|-w) command curl "$@"; return ;;
      --*) ;;
      -*[fi]*) command curl "$@"; return ;;
    esac
  done
  command curl --fail-with-body "$@"
}`;

describe('README shell blocks: extraction and markers', () => {
  it('reads sh/bash fences in order with their markers and output blocks; refuses unknown markers and unexplained skips', () => {
    const sample = [
      '```sh', 'echo one', '```', 'text', '<!-- readme-test: skip (needs a person) -->', '```bash', 'read x', '```',
      '<!-- readme-test: sign-in (over HTTP) -->', '```sh', 'echo http://localhost:9000/authorize?x', '```',
      '<!-- readme-test: output -->', '```text', 'http://localhost:9000/…', '```', '```js', 'not shell', '```',
    ].join('\n');
    const blocks = shellBlocks(sample);
    assert.deepEqual(blocks.map((b) => [b.index, b.line, b.code, b.mark?.kind, b.output]), [
      [1, 1, 'echo one', undefined, undefined],
      [2, 6, 'read x', 'skip', undefined],
      [3, 10, 'echo http://localhost:9000/authorize?x', 'sign-in', ['http://localhost:9000/…']],
    ]);
    assert.throws(() => shellBlocks('<!-- readme-test: skp (typo) -->\n```sh\nx\n```'), /unknown readme-test marker "skp"/);
    assert.throws(() => shellBlocks('<!-- readme-test: skip -->\n```sh\nx\n```'), /says why/);
    assert.match('www-authenticate: Bearer realm="x", error="insufficient_scope", scope="a"', outputPattern('Bearer …error="insufficient_scope"…'));
  });

  it('moves the README ports, the data dir and the agent URL for the test, and nothing else', () => {
    const rewritten = rewriteBlock('curl -s http://localhost:9000/x http://localhost:3000 $(cat .mandate/secrets/a) PORT=8100 amount=8000\nnode bin/mandate.js agent login --scope s', {
      portOffset: 100, dataDir: '/tmp/d', files: {}, gateway: 'http://localhost:8180/mcp',
    });
    assert.equal(rewritten, 'curl -s http://localhost:9100/x http://localhost:3000 $(cat /tmp/d/secrets/a) PORT=8200 amount=8000\nnode bin/mandate.js agent login --mcp-url http://localhost:8180/mcp --scope s');
    assert.equal(movePorts('/resources/http%3A%2F%2Flocalhost%3A8090%2Fmcp xlocalhost:8090', 100), '/resources/http%3A%2F%2Flocalhost%3A8190%2Fmcp xlocalhost:8090');
  });
});

describe('README walkthroughs, run in order against a demo on free ports', () => {
  let dir: string;
  let demo: RunningDemo | undefined;
  let offset: number;
  let dataDir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mandate-readme-'));
    dataDir = join(dir, 'data');
    offset = await freeDemoOffset(README_PORTS.filter((port) => port === 8090 || port === 8100 || port === 9465));
    demo = await startDemo({ cwd: dir, portOffset: offset, dataDir });
  });
  after(() => {
    demo?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every shell block exits 0 and prints what the README shows', needsInspector(), async (t) => {
    const blocks = shellBlocks(README);
    const issuer = `http://localhost:${9000 + offset}`;
    const everything = join(dir, 'everything.yaml');
    writeFileSync(everything, movePorts(readFileSync(join(ROOT, 'examples/gateway/everything.yaml'), 'utf8'), offset).replace(/\.mandate\//g, `${dataDir}/`));
    const rewrite = { portOffset: offset, dataDir, files: { 'examples/gateway/everything.yaml': everything }, gateway: `http://localhost:${8080 + offset}/mcp` };
    const home = join(dir, 'home');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: home,
      LOG_LEVEL: 'warn',
      NO_COLOR: '1',
      // The Inspector CLI: no terminal here, so its sign-in needs MCP_AUTO_OPEN_ENABLED (as the
      // README says); its browser launch goes nowhere (BROWSER=true), its callback to a free port.
      MCP_AUTO_OPEN_ENABLED: 'true',
      MCP_OAUTH_CALLBACK_URL: 'http://127.0.0.1:0/oauth/callback',
      BROWSER: 'true',
      XDG_CURRENT_DESKTOP: 'X-Generic',
      // `mandate admin token` signs in at the demo's admin MCP server (default on port 9000): the test's port.
      MANDATE_ADMIN_MCP_URL: `${issuer}/admin/mcp`,
    };
    for (const name of ['DISPLAY', 'WAYLAND_DISPLAY', 'AGENT_CLIENT_ID', 'AGENT_SECRET', 'MANDATE_AGENT_HOME', 'MCP_CLIENT_CONFIG_PATH', 'MCP_STORAGE_DIR', 'OPENAI_API_KEY']) delete env[name];

    const bash = spawn('bash', ['--noprofile', '--norc'], { cwd: ROOT, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let wake = () => {};
    bash.stdout.on('data', (d: Buffer) => ((out += d), wake()));
    bash.stderr.on('data', (d: Buffer) => ((err += d), wake()));
    const exited = new Promise<number | null>((resolve) => bash.on('exit', (code) => (resolve(code), wake())));
    bash.stdin.write(`set -euo pipefail\nmkdir -p "$HOME"\n${CURL_FAILS_ON_HTTP_ERRORS}\n`);

    const authorizeUrl = new RegExp(`${issuer}/authorize\\?[^\\s"'<>]+`, 'g');
    const approvalPage = new RegExp(`${issuer}/(?:approve/[A-Za-z0-9_-]+|approvals)(?=[\\s"'<>]|$)`, 'gm');
    let lastCode: string | undefined;
    const ran: ShellBlock[] = [];
    const skipped: ShellBlock[] = [];
    const started = Date.now();
    try {
      for (const block of blocks) {
        if (block.mark?.kind === 'skip') {
          skipped.push(block);
          continue;
        }
        let code = rewriteBlock(block.code, rewrite);
        if (/^CODE=\.\.\./m.test(code)) {
          assert.ok(lastCode, `block ${block.index} (README line ${block.line}) redeems a code, but no sign-in came before it`);
          code = code.replace(/^CODE=\.\.\./m, `CODE='${lastCode}'`);
        }
        const file = join(dir, `block-${block.index}.sh`);
        writeFileSync(file, `${code}\n`);
        const done = `@@readme-block-${block.index}-done@@`;
        const [outStart, errStart] = [out.length, err.length];
        bash.stdin.write(`source '${file}' < /dev/null\nprintf '\\n${done}\\n'; printf '\\n${done}\\n' >&2\n`);
        const signIns: Promise<void>[] = [];
        const seen = new Set<string>();
        const blockText = () => out.slice(outStart) + err.slice(errStart);
        const describeBlock = () => `block ${block.index} (README line ${block.line}):\n${code}\n--- stdout:\n${out.slice(outStart).slice(-3000)}\n--- stderr:\n${err.slice(errStart).slice(-3000)}`;
        const deadline = Date.now() + BLOCK_TIMEOUT_MS;
        for (;;) {
          if (block.mark?.kind === 'sign-in') {
            for (const [url] of blockText().matchAll(authorizeUrl)) {
              if (seen.has(url)) continue;
              seen.add(url);
              signIns.push(
                (async () => {
                  // "as admin" in the marker: the demo's admin, with the password the demo generated (npm start prints it).
                  const who = /\bas admin\b/.test(block.mark!.reason) ? { username: 'admin', password: readFileSync(join(dataDir, 'secrets', 'admin.password'), 'utf8').trim() } : {};
                  // "ticks" in the marker: the person ticks the consent page's high-risk boxes ("Also allow this").
                  const redirect = await new FormBrowser(issuer).authorize(url, { ...who, tickHighRisk: /\bticks\b/.test(block.mark!.reason) });
                  lastCode = redirect.searchParams.get('code') ?? undefined;
                  assert.ok(lastCode, `the sign-in returned no code: ${redirect.href}`);
                  // A waiting client (the agent, the Inspector) gets the redirect; where nothing listens, as in the walkthrough, it fails.
                  await fetch(redirect, { signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
                })(),
              );
            }
          }
          if (block.mark?.kind === 'approve') {
            for (const [page] of blockText().matchAll(approvalPage)) {
              if (seen.has(page)) continue;
              seen.add(page);
              // On the list, the call this block made: the one its CLI printed ("… needs your approval: <summary>").
              const summary = /needs your approval: (.+)$/m.exec(blockText())?.[1]?.trim();
              signIns.push(approveAsDemo(issuer, page, summary));
            }
          }
          if (out.slice(outStart).includes(done) && err.slice(errStart).includes(done)) break;
          if (bash.exitCode !== null) assert.fail(`exited ${bash.exitCode}: ${describeBlock()}`);
          if (Date.now() > deadline) assert.fail(`did not finish within ${BLOCK_TIMEOUT_MS / 1000} s: ${describeBlock()}`);
          await Promise.race([new Promise<void>((resolve) => (wake = resolve)), new Promise((resolve) => setTimeout(resolve, 200)), exited]);
        }
        await Promise.all(signIns);
        if (block.mark?.kind === 'sign-in') assert.ok(seen.size > 0, `block ${block.index} is marked sign-in but printed no authorization URL: ${describeBlock()}`);
        if (block.mark?.kind === 'approve') assert.ok(seen.size > 0, `block ${block.index} is marked approve but printed no approval link or page: ${describeBlock()}`);
        const printed = blockText().split('\n');
        for (const line of block.output ?? []) {
          const pattern = outputPattern(movePorts(line, offset));
          assert.ok(printed.some((p) => pattern.test(p)), `block ${block.index} (README line ${block.line}) should print ${JSON.stringify(line)}: ${describeBlock()}`);
        }
        ran.push(block);
      }
    } finally {
      bash.stdin.end();
      // The blocks' background processes (the everything walkthrough's) are in bash's process group.
      try {
        process.kill(-bash.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    t.diagnostic(`ran ${ran.length} of ${blocks.length} shell blocks in ${seconds} s; skipped ${skipped.length}: ${skipped.map((b) => `line ${b.line} (${b.mark!.reason})`).join('; ')}`);
    assert.ok(ran.length >= 20, `the README has its walkthroughs (${ran.length} blocks ran)`);
  });

  it('the README\'s MCP Inspector web UI steps (Inspector 2): Add Servers → + Add manually → streamable-http → Add → the switch → sign in → Connected, then the Tools tab', needsInspectorAndChromium(), async () => {
    // The README's words for the UI, checked against the Inspector's own page.
    const section = README.slice(README.indexOf('## Walkthrough: the demo with MCP Inspector'), README.indexOf('## Walkthrough: an agent through the gateway'));
    for (const words of ['**Add Servers**', '**+ Add manually**', '**streamable-http**', '**Add**', '*Connect or disconnect*', '*Connected*', '*Authorization complete*', '**Tools**', '/oauth/callback']) assert.ok(section.includes(words), words);
    const [clientPort, sandboxPort, appPort] = [await freePort(), await freePort(), await freePort()];
    const home = join(dir, 'inspector-home');
    const inspector = spawn(INSPECTOR_NODE, [INSPECTOR_LAUNCHER], {
      env: { ...process.env, HOME: home, CLIENT_PORT: String(clientPort), MCP_SANDBOX_PORT: String(sandboxPort), MCP_APP_ORIGIN_PORT: String(appPort), MCP_AUTO_OPEN_ENABLED: 'false', MCP_INSPECTOR_SECRET_STORE: 'memory', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    inspector.stdout.on('data', (d: Buffer) => (out += d));
    inspector.stderr.on('data', (d: Buffer) => (out += d));
    const browser = await launchChromium();
    try {
      for (let i = 0; i < 300 && !/http:\/\/127\.0\.0\.1:\d+\/?\?MCP_INSPECTOR_API_TOKEN=\w+/.test(out); i++) await new Promise((resolve) => setTimeout(resolve, 100));
      const address = /(http:\/\/127\.0\.0\.1:\d+\/?\?MCP_INSPECTOR_API_TOKEN=\w+)/.exec(out)?.[1];
      assert.ok(address, `the Inspector printed no address:\n${out}`);
      const server = `http://localhost:${8787 + offset}/mcp`;
      const page = await browser.newPage();
      await page.goto(address);
      await page.getByRole('button', { name: 'Add Servers' }).click();
      await page.getByRole('menuitem', { name: '+ Add manually' }).click();
      await page.getByLabel('Server ID').fill('todo');
      await page.getByRole('textbox', { name: 'Transport' }).click();
      await page.getByRole('option', { name: 'streamable-http' }).click();
      await page.getByLabel('URL').fill(server);
      await page.getByRole('button', { name: 'Add', exact: true }).click();
      await page.getByRole('dialog').waitFor({ state: 'detached' });
      // The switch's track covers its input (a person clicks the track); checking it leaves the page
      // for the sign-in, so Playwright's check of the new state may fail: the navigation is the proof.
      await Promise.all([
        page.waitForURL(new RegExp(`^http://localhost:${9000 + offset}/`), { timeout: 20_000 }),
        page.getByLabel('Connect or disconnect "todo"').check({ force: true }).catch(() => undefined),
      ]);
      await page.getByLabel(/user/i).fill('demo');
      await page.getByLabel(/password/i).fill('demo');
      await navigating(page, () => page.locator('form [type=submit]').first().click());
      await page.getByRole('button', { name: /allow/i }).click();
      await page.waitForURL(new RegExp(`^http://127\\.0\\.0\\.1:${clientPort}/`), { timeout: 20_000 });
      await page.getByText('Authorization complete').waitFor({ timeout: 20_000 });
      await page.getByText('Connected', { exact: true }).first().waitFor({ timeout: 20_000 });
      await page.locator('label', { hasText: /^Tools$/ }).first().click();
      await page.getByText('who_am_I').first().waitFor({ timeout: 20_000 });
    } catch (error) {
      if (process.env.README_TEST_SCREENSHOT) await (browser.contexts()[0]?.pages()[0])?.screenshot({ path: process.env.README_TEST_SCREENSHOT });
      throw error;
    } finally {
      await browser.close();
      try {
        process.kill(-inspector.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
});

/**
 * What the person does with an approval link or the pending approvals page: signs in as demo/demo
 * and approves (on the list, the pending call with that summary, else the first), typing the password again.
 */
async function approveAsDemo(issuer: string, url: string, summary?: string): Promise<void> {
  const browser = new FormBrowser(issuer);
  let page = await browser.open(url);
  if (page.html.includes('name="username"')) page = await browser.submit(page, { username: 'demo', password: 'demo' });
  if (url.endsWith('/approvals')) {
    // Two calls held in the same second are listed in either order: take the one with this summary.
    const links = [...page.html.matchAll(/href="(\/approve\/[A-Za-z0-9_-]+)"><bdi>([^<]*)<\/bdi>/g)];
    const link = (summary === undefined ? links[0] : links.find(([, , text]) => text === summary))?.[1];
    assert.ok(link, `no pending approval listed at ${url}: ${page.html.slice(0, 2000)}`);
    page = await browser.open(link);
  }
  assert.ok(page.html.includes('value="approve"'), `not an approval page (${page.status}) at ${page.url}: ${page.html.slice(0, 2000)}`);
  const decided = await browser.submit(page, { decision: 'approve', password: 'demo' });
  assert.equal(decided.status, 200, decided.html.slice(0, 2000));
}
