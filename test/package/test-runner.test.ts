import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIXTURES = 'test/package/fixtures';

/** Runs `npm test -- <files>` (scripts/test.mjs) on fixture files with a short per-file timeout. */
function npmTest(files: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  // NODE_TEST_CONTEXT would make the inner runner report to this one instead of printing.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, ['scripts/test.mjs', ...files.map((file) => `${FIXTURES}/${file}`)], {
    cwd: ROOT,
    env: { ...env, MANDATE_TEST_TIMEOUT: String(timeoutMs) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out })));
}

/** The `Failed or cancelled: <file> — <what>` lines that end a run. */
const named = (out: string) => out.split('\n').filter((line) => line.startsWith('Failed or cancelled: '));

describe('npm test names what failed', { timeout: 60_000 }, () => {
  it('a file cancelled by the per-file timeout is a failure, by name, beside a failed test; a passing file is not named', async () => {
    // Long enough for fails.ts to end on a loaded machine (2 s was not, with 5 jobs on 2 cores);
    // hangs.ts never ends, so it is cancelled whatever the load.
    const { code, out } = await npmTest(['hangs.ts', 'fails.ts', 'passes.ts'], 15_000);
    assert.notEqual(code, 0);
    assert.deepEqual(named(out).sort(), [
      `Failed or cancelled: ${FIXTURES}/fails.ts — compares two different numbers: Expected values to be strictly equal:`,
      `Failed or cancelled: ${FIXTURES}/hangs.ts — cancelled: still running at the 15000 ms per-file timeout`,
    ]);
  });

  it('a run that passes names nothing and exits 0', async () => {
    const { code, out } = await npmTest(['passes.ts'], 20_000);
    assert.equal(code, 0, out);
    assert.deepEqual(named(out), []);
  });
});
