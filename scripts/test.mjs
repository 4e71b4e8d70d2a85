// `npm test`: build, type-check, lint, then every test file under test/ and src/ with Node's test runner.
// Tests that need PostgreSQL, Redis or Chromium skip with a reason when those are absent; the
// reasons are listed at the end. With MANDATE_REQUIRE_SERVICES=1 (CI) such a test fails instead.
// The run ends by naming every failed test and every failed or cancelled file.
//
//   npm test                         everything
//   npm test -- test/x.test.ts ...   only these files (no build, type-check or lint)
//   MANDATE_TEST_TIMEOUT=<ms>        the per-file timeout (default five minutes)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = (cmd, args, env = process.env) => spawnSync(cmd, args, { stdio: 'inherit', env }).status ?? 1;
const step = (name, cmd, args) => {
  console.log(`\n> ${name}`);
  if (run(cmd, args) !== 0) {
    console.error(`\n${name} failed`);
    process.exit(1);
  }
};

function findTests(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath ?? e.path, e.name))
    .sort();
}

const only = process.argv.slice(2);
if (only.length === 0) {
  // The build is what the CLI tests spawn (bin/mandate.js runs dist/ when it is current).
  step('build', process.execPath, ['scripts/build.mjs']);
  step('type-check', 'npx', ['tsc', '--noEmit', '-p', '.']);
  step('lint', 'npx', ['eslint', '.', '--max-warnings=0']);
}
const files = only.length ? only : [...findTests('test'), ...findTests('src')];
const logs = mkdtempSync(join(tmpdir(), 'mandate-test-'));
const skipLog = join(logs, 'skipped.txt');
const failureLog = join(logs, 'failures.jsonl');
// A file that hangs fails after five minutes instead of holding the run. On Node 20 this timeout
// bounds a whole file, not each test: the demo file (one demo on fixed ports, ~40 s on a quiet
// machine) must fit in it on a loaded two-core machine too.
const timeout = Number(process.env.MANDATE_TEST_TIMEOUT || 300_000);
if (!Number.isInteger(timeout) || timeout <= 0) throw new Error(`MANDATE_TEST_TIMEOUT must be a positive number of milliseconds, got ${process.env.MANDATE_TEST_TIMEOUT}`);
console.log(`\n> ${files.length} test files`);
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${new URL('test-reporter.mjs', import.meta.url).href}`, `--test-reporter-destination=${failureLog}`];
const status = run(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', `--test-timeout=${timeout}`, ...reporters, ...files], {
  ...process.env,
  MANDATE_SKIP_LOG: skipLog,
});
if (existsSync(skipLog)) {
  const reasons = [...new Set(readFileSync(skipLog, 'utf8').split('\n').filter(Boolean))];
  console.log(`\nSkipped (not available on this machine; CI runs them):\n${reasons.map((r) => `  - ${r}`).join('\n')}`);
}
// The spec summary can say "fail 0" for a run whose file was cancelled: name each one here.
const failures = existsSync(failureLog) ? readFileSync(failureLog, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line)) : [];
if (failures.length > 0) {
  console.log('');
  for (const { file, test, kind, message, exitCode, diagnostics } of failures) {
    const what = test
      ? `${test}: ${message}`
      : kind === 'testTimeoutFailure'
        ? `cancelled: still running at the ${timeout} ms per-file timeout`
        : `the file failed outside its tests (exit code ${exitCode}${diagnostics ? `): ${diagnostics.join(' | ')}` : '; its output is above)'}`;
    console.log(`Failed or cancelled: ${file ?? '(no file)'} — ${what}`);
  }
}
process.exit(status === 0 && failures.length > 0 ? 1 : status);
