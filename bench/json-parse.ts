/**
 * Micro-benchmark of what the gateway's validation filter does to a POST body since issue 11:
 * the depth scan before JSON.parse, and re-serializing the validated message for the upstream
 * (instead of forwarding the raw bytes). `node --import tsx bench/json-parse.ts`.
 * Prints CPU µs per body for each step, so the added cost can be set against the gateway's
 * ~230 µs of CPU per request (docs/benchmarks.md).
 */
import { parseJsonWithin } from '../src/core/json-limits.ts';
import { parseMcpMessage } from '../src/gateway/mcp-message.ts';

const bodies = {
  'tools/call, 150 B': JSON.stringify({ jsonrpc: '2.0', id: 42, method: 'tools/call', params: { name: 'read_balance', arguments: { account: 'checking' } } }),
  'tools/call, 2 kB': JSON.stringify({ jsonrpc: '2.0', id: 43, method: 'tools/call', params: { name: 'echo', arguments: { items: Array.from({ length: 40 }, (_, i) => ({ id: i, text: `item ${i}`, tags: ['a', 'b'] })) } } }),
  'tools/call, 64 kB': JSON.stringify({ jsonrpc: '2.0', id: 44, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(64 * 1024) } } }),
};

function measure(label: string, body: string, step: (text: string) => unknown): number {
  const rounds = Math.max(2_000, Math.floor(20_000_000 / body.length));
  for (let i = 0; i < rounds / 10; i++) step(body);
  // CPU time, not wall time: the machine is shared, and CPU per request is the figure that matters.
  const start = process.cpuUsage();
  for (let i = 0; i < rounds; i++) step(body);
  const used = process.cpuUsage(start);
  const micros = (used.user + used.system) / rounds;
  console.log(`${label.padEnd(44)} ${micros.toFixed(2).padStart(8)} µs`);
  return micros;
}

for (const [name, body] of Object.entries(bodies)) {
  console.log(`\n${name} (${body.length} bytes)`);
  const before = measure('before: JSON.parse + parseMcpMessage', body, (text) => parseMcpMessage(JSON.parse(text)));
  const scanned = measure('depth scan + JSON.parse + parseMcpMessage', body, (text) => parseMcpMessage(parseJsonWithin(text, { maxDepth: 64 })));
  const after = measure('  + JSON.stringify (what is forwarded)', body, (text) => {
    const json = parseJsonWithin(text, { maxDepth: 64 });
    parseMcpMessage(json);
    return JSON.stringify(json);
  });
  console.log(`${'added per request'.padEnd(44)} ${(after - before).toFixed(2).padStart(8)} µs (scan ${(scanned - before).toFixed(2)}, re-serialize ${(after - scanned).toFixed(2)})`);
}
