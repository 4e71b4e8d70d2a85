/**
 * Issue 18 part 4: the audit writer batches its writes (each is a hand-off to libuv's thread pool
 * that costs far more than its size): a lone event goes out at once, events that follow within
 * `batchMs` wait for one write together, and nothing waits past `flush()` or `close()`.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { AuditWriter } from '../../src/gateway/node/audit-writer.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';

const event = (id: string): GatewayAuditEvent => ({ time: 't', request_id: id, route: '/mcp', http_method: 'POST', decision: 'allow', status: 200, latency_ms: 1 });
const ids = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { request_id: string }).request_id);
/** Until the writer's scheduled work (an immediate, then the thread pool) has had its turn. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

describe('fast path: batched audit writes', () => {
  it('writes a lone event at once, holds the next ones for one write within batchMs, and flush() and close() write them', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'mandate-fast-audit-')), 'audit.jsonl');
    const writes: number[] = [];
    // A batch window far longer than the test: what is written before flush() is only the lone event.
    const writer = new AuditWriter({ file, maxBytes: 1 << 20, keep: 1, stdout: false, bufferEvents: 100, batchMs: 600_000, log: pino({ level: 'silent' }), onWritten: (n) => void writes.push(n) });
    await writer.open();
    writer.record(event('first'));
    await settle();
    assert.deepEqual(ids(file), ['first'], 'the first event is written without waiting for a batch');
    writer.record(event('second'));
    writer.record(event('third'));
    await settle();
    assert.deepEqual(ids(file), ['first'], 'the following ones wait for the batch');
    await writer.flush();
    assert.deepEqual(ids(file), ['first', 'second', 'third']);
    assert.deepEqual(writes, [1, 2], 'the two held events went out in one write');
    writer.record(event('fourth'));
    await writer.close();
    assert.deepEqual(ids(file), ['first', 'second', 'third', 'fourth'], 'close() writes what is held');
  });

  it('still answers backpressure: ready() waits while the buffer is full and resolves once the batch is written', async () => {
    const writer = new AuditWriter({ file: null, maxBytes: 1, keep: 1, stdout: false, bufferEvents: 2, batchMs: 5, log: pino({ level: 'silent' }) });
    writer.record(event('a'));
    writer.record(event('b'));
    const wait = writer.ready();
    assert.ok(wait instanceof Promise, 'a full buffer makes callers wait');
    assert.equal(await wait, true);
    assert.equal(writer.ready(), undefined);
  });
});
