import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renameCallEvent, RESULT_RENAMES, upstreamRequestOf } from '../../src/gateway/mux/names.ts';

/**
 * The names the multiplexer gives in a call's SSE answer, event by event (docs/gateway.md "Several
 * MCP servers behind one route"): the result's resource URIs, the upstream's own requests and
 * their cancellations; everything else, and the event's other fields, as the upstream sent them.
 */
describe('gateway mux: names in a call stream', () => {
  const event = (message: unknown, extra = 'id: 7\nevent: message') => `${extra}\ndata: ${JSON.stringify(message)}`;
  const dataOf = (text: string) => JSON.parse(text.split('\n').find((line) => line.startsWith('data: '))!.slice(6)) as Record<string, unknown>;

  it('the response to the call: its resource links and embedded resources renamed, structuredContent as it was; the event id kept', () => {
    const result = {
      content: [
        { type: 'text', text: 'file:///a' },
        { type: 'resource_link', uri: 'file:///a', name: 'a' },
        { type: 'resource', resource: { uri: 'file:///b', text: 'b' } },
      ],
      structuredContent: { uri: 'file:///a' },
    };
    const out = renameCallEvent(event({ jsonrpc: '2.0', id: 3, result }), 'bank', 3, RESULT_RENAMES['tools/call']);
    assert.ok(out.startsWith('id: 7\nevent: message\n'));
    assert.deepEqual(dataOf(out), {
      jsonrpc: '2.0',
      id: 3,
      result: {
        content: [
          { type: 'text', text: 'file:///a' },
          { type: 'resource_link', uri: 'mandate+bank:file:///a', name: 'a' },
          { type: 'resource', resource: { uri: 'mandate+bank:file:///b', text: 'b' } },
        ],
        structuredContent: { uri: 'file:///a' },
      },
    });
    // Another request's response (not this call's) is dropped: the client would take it for the answer to one of its own.
    assert.equal(renameCallEvent(event({ jsonrpc: '2.0', id: 4, result }), 'bank', 3, RESULT_RENAMES['tools/call']), '');
    assert.equal(renameCallEvent(event({ jsonrpc: '2.0', id: '3', result }), 'bank', 3, RESULT_RENAMES['tools/call']), '', 'an id of another type is another id');
  });

  it("prompts/get: a message's embedded resource, one block or several", () => {
    const rename = RESULT_RENAMES['prompts/get']!;
    const one = { type: 'resource', resource: { uri: 'note://1', text: 'x' } };
    assert.deepEqual(rename({ messages: [{ role: 'user', content: one }, { role: 'assistant', content: [one, { type: 'text', text: 't' }] }] }, 'kb'), {
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: 'mandate+kb:note://1', text: 'x' } } },
        { role: 'assistant', content: [{ type: 'resource', resource: { uri: 'mandate+kb:note://1', text: 'x' } }, { type: 'text', text: 't' }] },
      ],
    });
  });

  it("the upstream's request and its cancellation named mandate+<upstream>:<id as JSON>; the client's answer finds the way back", () => {
    const asked = dataOf(renameCallEvent(event({ jsonrpc: '2.0', id: 0, method: 'elicitation/create', params: {} }), 'bank', 3));
    assert.equal(asked.id, 'mandate+bank:0');
    assert.deepEqual(upstreamRequestOf(asked.id), { upstream: 'bank', id: 0 });
    const cancelled = dataOf(renameCallEvent(event({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'r-1', reason: 'timeout' } }), 'bank', 3));
    assert.deepEqual(cancelled.params, { requestId: 'mandate+bank:"r-1"', reason: 'timeout' });
    assert.deepEqual(upstreamRequestOf(cancelled.params && (cancelled.params as { requestId: string }).requestId), { upstream: 'bank', id: 'r-1' });
  });

  it('progress and a priming event (empty data) pass as written; what a client would not read as a message is dropped', () => {
    for (const raw of [event({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } }), 'id: 1\ndata: ']) {
      assert.equal(renameCallEvent(raw, 'bank', 3, RESULT_RENAMES['tools/call']), raw);
    }
    for (const raw of ['id: 2', 'data: not json', `data: ${JSON.stringify([{ jsonrpc: '2.0', id: 0, method: 'elicitation/create' }])}`, `event: other\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 3, result: {} })}`]) {
      assert.equal(renameCallEvent(raw, 'bank', 3, RESULT_RENAMES['tools/call']), '', raw);
    }
    // An id the gateway would give: an upstream's own is dropped (it would send the client's answer to another upstream).
    assert.equal(renameCallEvent(event({ jsonrpc: '2.0', id: 'mandate+other:5', method: 'elicitation/create', params: {} }), 'bank', 3), '');
  });
});
