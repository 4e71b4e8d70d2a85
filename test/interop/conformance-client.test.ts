import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { skipUnless } from '../helpers/services.ts';

const run = promisify(execFile);
const CONFORMANCE = resolve('.cache/conformance/node_modules');
const NODE22 = join(CONFORMANCE, 'node/bin/node');
const CLI = join(CONFORMANCE, '@modelcontextprotocol/conformance/dist/index.js');
const available = existsSync(NODE22) && existsSync(CLI);
const WRAPPER = resolve('test/interop/conformance-client.ts');
const TSX = resolve('node_modules/tsx/dist/loader.mjs');
const BASELINE = parse(readFileSync(resolve('test/interop/conformance-client-baseline.yml'), 'utf8')) as Record<string, string>;

/** The suite's client `auth/*` scenarios (conformance 0.1.16, `conformance list --client`). */
const AUTH_SCENARIOS = [
  'metadata-default',
  'metadata-var1',
  'metadata-var2',
  'metadata-var3',
  'basic-cimd',
  'scope-from-www-authenticate',
  'scope-from-scopes-supported',
  'scope-omitted-when-undefined',
  'scope-step-up',
  'scope-retry-limit',
  'token-endpoint-auth-basic',
  'token-endpoint-auth-post',
  'token-endpoint-auth-none',
  'pre-registration',
  '2025-03-26-oauth-metadata-backcompat',
  '2025-03-26-oauth-endpoint-fallback',
  'resource-mismatch',
  'offline-access-scope',
  'offline-access-not-supported',
  'client-credentials-jwt',
  'client-credentials-basic',
  'cross-app-access-complete-flow',
].map((name) => `auth/${name}`);

interface Outcome {
  scenario: string;
  passed: boolean;
  /** The checks that were not SUCCESS/INFO, and the client's last stderr line. */
  problems: string[];
}

function checksUnder(dir: string): { id: string; status: string; description: string }[] {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) {
      const found = checksUnder(path);
      if (found.length) return found;
    } else if (entry === 'checks.json') return JSON.parse(readFileSync(path, 'utf8'));
  }
  return [];
}

/** One scenario: the suite's verdict (exit 0 = passed: no FAILURE, no WARNING, the client exited as expected). */
async function scenario(name: string): Promise<Outcome> {
  const out = mkdtempSync(join(tmpdir(), 'mandate-conformance-client-'));
  // The suite spawns the command with a shell: absolute paths, this process's Node (22 runs the suite).
  const command = `"${process.execPath}" --import "${TSX}" "${WRAPPER}"`;
  let passed = true;
  await run(NODE22, [CLI, 'client', '--scenario', name, '--command', command, '--timeout', '30000', '-o', out], { timeout: 90_000, maxBuffer: 64 * 1024 * 1024 }).catch((error: { code?: number }) => {
    if (error.code !== 1) throw error;
    passed = false;
  });
  const checks = checksUnder(out);
  const problems = checks.filter((check) => check.status === 'FAILURE' || check.status === 'WARNING').map((check) => `${check.id} ${check.status}: ${check.description}`);
  rmSync(out, { recursive: true, force: true });
  return { scenario: name, passed, problems };
}

/** All scenarios, two at a time (the machine is shared). */
async function runScenarios(names: string[], concurrency = 2): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const queue = [...names];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) outcomes.push(await scenario(next));
    }),
  );
  return outcomes.sort((a, b) => names.indexOf(a.scenario) - names.indexOf(b.scenario));
}

describe('MCP conformance suite (client mode): the agent SDK as the client', () => {
  it(
    'every auth scenario passes except the baseline, each of which has its reason',
    skipUnless(available, 'MCP conformance suite: run `npm run conformance:install` (it needs Node 22, installed under .cache/)'),
    async () => {
      for (const [name, reason] of Object.entries(BASELINE)) {
        assert.ok(AUTH_SCENARIOS.includes(name), `baseline entry ${name} is a scenario`);
        assert.ok(typeof reason === 'string' && reason.length > 20, `baseline entry ${name} says why`);
      }
      const outcomes = await runScenarios(AUTH_SCENARIOS);
      // For docs/conformance.md: MANDATE_CONFORMANCE_REPORT=<file> keeps every scenario's outcome.
      if (process.env.MANDATE_CONFORMANCE_REPORT) writeFileSync(process.env.MANDATE_CONFORMANCE_REPORT, JSON.stringify(outcomes, null, 2));
      const unexpected = outcomes.filter((o) => !o.passed && !(o.scenario in BASELINE)).map((o) => `${o.scenario}: ${o.problems.join('; ') || 'the client failed'}`);
      const fixed = outcomes.filter((o) => o.passed && o.scenario in BASELINE).map((o) => o.scenario);
      assert.deepEqual(unexpected, [], 'scenarios that fail and are not in the baseline');
      assert.deepEqual(fixed, [], 'baseline scenarios that pass now: remove them from conformance-client-baseline.yml');
      assert.equal(outcomes.filter((o) => o.passed).length, AUTH_SCENARIOS.length - Object.keys(BASELINE).length);
    },
  );
});
