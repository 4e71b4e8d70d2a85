import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/auth-server.ts';
import { EVERYTHING_TOOLS, startEverything } from '../helpers/everything.ts';
import { startFakeIssuer, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const run = promisify(execFile);
const CONFORMANCE = resolve('.cache/conformance/node_modules');
const NODE22 = join(CONFORMANCE, 'node/bin/node');
const CLI = join(CONFORMANCE, '@modelcontextprotocol/conformance/dist/index.js');
const available = existsSync(NODE22) && existsSync(CLI);
/** The tools the suite's server scenarios call. */
const SUITE_TOOLS = [
  'test_audio_content',
  'test_elicitation',
  'test_elicitation_sep1034_defaults',
  'test_elicitation_sep1330_enums',
  'test_embedded_resource',
  'test_error_handling',
  'test_image_content',
  'test_multiple_content_types',
  'test_sampling',
  'test_simple_text',
  'test_tool_with_logging',
];

/** Runs the suite in server mode; returns each scenario's checks as `id → status`. */
async function conformance(url: string): Promise<Map<string, Map<string, string>>> {
  const out = mkdtempSync(join(tmpdir(), 'mandate-conformance-'));
  // Exit code 1 means "some scenario failed": the comparison below is the assertion.
  await run(NODE22, [CLI, 'server', '--url', url, '-o', out], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }).catch((error: { code?: number }) => {
    if (error.code !== 1) throw error;
  });
  const results = new Map<string, Map<string, string>>();
  for (const dir of readdirSync(out)) {
    const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T.*$/, '');
    const checks = JSON.parse(readFileSync(join(out, dir, 'checks.json'), 'utf8')) as { id: string; status: string }[];
    results.set(scenario, new Map(checks.map((check) => [check.id, check.status])));
  }
  return results;
}

/**
 * The suite cannot send a header, so this stand-in for an MCP client's auth adds the bearer token
 * and passes everything else (Host and Origin included: one scenario sends bad ones) unchanged.
 */
async function tokenAddingProxy(target: string, token: string) {
  const port = await freePort();
  const server = createServer((req, res) => {
    const upstream = request(new URL(req.url!, target), { method: req.method, headers: { ...req.headers, authorization: `Bearer ${token}` } }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((done) => (server.closeAllConnections(), server.close(() => done()))) };
}

describe('MCP conformance suite (server mode): through the gateway as directly', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let everything: Awaited<ReturnType<typeof startEverything>>;
  let gateway: TestGateway;
  let proxy: Awaited<ReturnType<typeof tokenAddingProxy>>;

  before(async () => {
    if (!available) return;
    issuer = await startFakeIssuer();
    everything = await startEverything();
    // unlisted_tools is deny by default: the route lists every tool server-everything offers, as a
    // deployment in front of it would, and the test_* tools the suite calls (the server answers
    // those itself, "unknown tool", which is what this test compares).
    const tools = Object.fromEntries([...EVERYTHING_TOOLS, ...SUITE_TOOLS].map((name) => [name, {}]));
    gateway = await startTestGateway((url) => [{ path: '/mcp', upstream: everything.url, resource: `${url}/mcp`, authorization_servers: [issuer.issuer], tools }]);
    proxy = await tokenAddingProxy(gateway.url, await issuer.sign({ sub: 'conformance', aud: `${gateway.url}/mcp` }, {}));
  });
  after(async () => {
    if (!available) return;
    await proxy.close();
    await gateway.close();
    await everything.close();
    await issuer.close();
  });

  it(
    'every check gives the same result, except where the gateway adds protection',
    skipUnless(available, 'MCP conformance suite: run `npm run conformance:install` (it needs Node 22, installed under .cache/)'),
    async () => {
      const direct = await conformance(everything.url);
      const through = await conformance(`${proxy.url}/mcp`);
      assert.ok(direct.size >= 25, `the suite ran its scenarios (${direct.size})`);
      assert.deepEqual([...through.keys()].sort(), [...direct.keys()].sort());
      const differences: string[] = [];
      for (const [scenario, checks] of direct) {
        for (const [id, status] of checks) {
          const other = through.get(scenario)!.get(id);
          if (other !== status) differences.push(`${scenario}/${id}: ${status} directly, ${other} through the gateway`);
        }
      }
      // server-everything does not check Origin; the gateway does (DNS rebinding protection).
      const allowed = differences.filter((line) => !/^dns-rebinding-protection\/.*: FAILURE directly, SUCCESS through the gateway$/.test(line));
      assert.deepEqual(allowed, []);
      const passed = [...through.values()].flatMap((checks) => [...checks.values()]).filter((status) => status === 'SUCCESS').length;
      assert.ok(passed >= 13, `checks passed through the gateway: ${passed}`);
    },
  );
});
