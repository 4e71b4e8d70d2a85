// `npm run fuzz`: every property-based fuzz test (test/fuzz/*.test.ts) with a large FUZZ_RUNS
// (default 20000 per property), then the total number of generated inputs and the time taken.
// `npm test` runs the same files with the small default (300).
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const files = readdirSync('test/fuzz')
  .filter((name) => name.endsWith('.test.ts'))
  .map((name) => join('test/fuzz', name))
  .sort();
const runs = process.env.FUZZ_RUNS ?? '20000';
const started = Date.now();
console.log(`> fuzz: ${files.length} files, FUZZ_RUNS=${runs}`);
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', '--test-concurrency=2', '--test-timeout=1800000', ...files], {
  env: { ...process.env, FUZZ_RUNS: runs },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let total = 0;
let buffered = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buffered += chunk;
  const lines = buffered.split('\n');
  buffered = lines.pop() ?? '';
  for (const line of lines) {
    // Each property prints how many inputs it ran (test/fuzz/count.ts).
    const match = /fuzz-inputs (\d+)/.exec(line);
    if (match) total += Number(match[1]);
  }
});
child.on('close', (status) => {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`\n> fuzz: ${total} generated inputs in ${seconds} s (${status === 0 ? 'all properties held' : 'FAILED'})`);
  process.exit(status ?? 1);
});
