import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkStandardHeaders, expectedMcpName, JsonRpcError, parseMcpMessage, usesStandardHeaders } from '../../src/gateway/mcp-message.ts';

const code = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (error) {
    assert.ok(error instanceof JsonRpcError, String(error));
    return error.code;
  }
};

describe('MCP messages (JSON-RPC 2.0 shape)', () => {
  it('types requests, notifications, responses and tool calls', () => {
    const call = parseMcpMessage({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'transfer', arguments: { amount: 5 } } });
    assert.deepEqual([call.kind, call.id, call.method, call.toolName, call.arguments], ['request', 7, 'tools/call', 'transfer', { amount: 5 }]);
    assert.equal(parseMcpMessage({ jsonrpc: '2.0', method: 'notifications/initialized' }).kind, 'notification');
    assert.equal(parseMcpMessage({ jsonrpc: '2.0', id: 'a', result: {} }).kind, 'response');
    assert.equal(parseMcpMessage({ jsonrpc: '2.0', id: 'a', error: { code: -1, message: 'x' } }).kind, 'response');
    assert.deepEqual(parseMcpMessage({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 't' } }).arguments, {});
  });

  it('refuses a method that imitates an MCP method (case, whitespace, invisible or full-width characters) with -32600', () => {
    for (const method of ['TOOLS/CALL', 'tools/call ', ' tools/call', 'Tools/Call', 'tools/ call', 'tools/call\u200b', 'tools/call\u0000', '\uff54ools/call', 'logging/setlevel', 'NOTIFICATIONS/INITIALIZED']) {
      for (const id of [1, undefined]) {
        let error: unknown;
        try {
          parseMcpMessage({ jsonrpc: '2.0', ...(id === undefined ? {} : { id }), method, params: { name: 'transfer', arguments: {} } });
        } catch (caught) {
          error = caught;
        }
        assert.ok(error instanceof JsonRpcError, JSON.stringify(method));
        assert.equal(error.code, -32600);
        assert.equal(error.status, 400);
        assert.equal(error.rejection, 'method_spelling');
        assert.match(error.message, /is not spelled as the MCP method/);
      }
    }
    // Exact MCP methods, and methods MCP does not define, are not this check's business.
    for (const method of ['tools/call', 'logging/setLevel', 'x-vendor/Custom', 'tools/calls']) assert.equal(code(() => parseMcpMessage({ jsonrpc: '2.0', id: 1, method, params: { name: 't' } })), 'ok');
  });

  it('refuses malformed messages with -32600 (or -32602 for bad tool-call params)', () => {
    const cases: [unknown, number][] = [
      [[{ jsonrpc: '2.0', id: 1, method: 'ping' }], -32600], // batch
      [{ id: 1, method: 'ping' }, -32600], // no jsonrpc
      [{ jsonrpc: '1.0', id: 1, method: 'ping' }, -32600],
      ['ping', -32600],
      [null, -32600],
      [{ jsonrpc: '2.0', id: 1.5, method: 'ping' }, -32600],
      [{ jsonrpc: '2.0', id: {}, method: 'ping' }, -32600],
      [{ jsonrpc: '2.0', id: 1, method: '' }, -32600],
      [{ jsonrpc: '2.0', id: 1, method: 5 }, -32600],
      [{ jsonrpc: '2.0', id: 1, method: 'x', params: [1] }, -32600],
      [{ jsonrpc: '2.0', result: {} }, -32600], // response without id
      [{ jsonrpc: '2.0', id: 1, result: {}, error: {} }, -32600],
      [{ jsonrpc: '2.0', id: 1 }, -32600],
      [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }, -32602],
      [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 't', arguments: [1] } }, -32602],
    ];
    for (const [body, expected] of cases) assert.equal(code(() => parseMcpMessage(body)), expected, JSON.stringify(body));
  });

  it('keeps the request id in errors when there is one', () => {
    try {
      parseMcpMessage({ jsonrpc: '2.0', id: 42, method: 'tools/call', params: {} });
      assert.fail('should throw');
    } catch (error) {
      assert.deepEqual((error as JsonRpcError).toResponseObject(), { jsonrpc: '2.0', id: 42, error: { code: -32602, message: 'tools/call needs params.name' } });
    }
  });
});

describe('standard headers (2026-07-28, SEP-2243): -32020 when they disagree with the body', () => {
  const call = parseMcpMessage({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'read_balance' } });
  const read = parseMcpMessage({ jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'file:///a' } });
  const list = parseMcpMessage({ jsonrpc: '2.0', id: 3, method: 'tools/list' });
  const NEW = '2026-07-28';
  const OLD = '2025-11-25';

  it('derives Mcp-Name from params.name or params.uri', () => {
    assert.equal(expectedMcpName(call), 'read_balance');
    assert.equal(expectedMcpName(read), 'file:///a');
    assert.equal(expectedMcpName(list), undefined);
    assert.equal(usesStandardHeaders(NEW), true);
    assert.equal(usesStandardHeaders(OLD), false);
    assert.equal(usesStandardHeaders('garbage'), false);
  });

  it('accepts matching headers and refuses missing or different ones', () => {
    const cases: [Parameters<typeof checkStandardHeaders>, string | number][] = [
      [[call, { method: 'tools/call', name: 'read_balance' }, NEW], 'ok'],
      [[read, { method: 'resources/read', name: 'file:///a' }, NEW], 'ok'],
      [[list, { method: 'tools/list' }, NEW], 'ok'],
      [[call, { method: 'tools/call', name: 'transfer' }, NEW], -32020], // the edge would authorize another tool
      [[call, { method: 'tools/list', name: 'read_balance' }, NEW], -32020],
      [[call, { name: 'read_balance' }, NEW], -32020], // Mcp-Method missing
      [[call, { method: 'tools/call' }, NEW], -32020], // Mcp-Name missing
      [[list, { method: 'tools/list', name: 'x' }, NEW], 'ok'], // not a name-bearing method: ignored
      [[call, {}, OLD], 'ok'], // the older revision does not define them
      [[call, { method: 'tools/call', name: 'transfer' }, OLD], -32020], // but sent ones must agree
      [[parseMcpMessage({ jsonrpc: '2.0', id: 9, result: {} }), {}, NEW], 'ok'], // responses carry none
    ];
    for (const [args, expected] of cases) assert.equal(code(() => checkStandardHeaders(...args)), expected, JSON.stringify(args.slice(1)));
  });
});
