import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PinClient, PinsUnavailable, REPORT_MAX_BYTES } from '../../src/gateway/pins/client.ts';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * A tools/list larger than the AS's body limit is reported in batches sharing a list_id: trust on
 * first use spans them (every tool pinned), and a later list's new tool is still `new`.
 */
const SECRET = 'batch-pin-gateway-secret-0123456789abcd';
const RESOURCE = 'https://batches.pins.test/mcp';

describe('tool pinning: reports in batches', () => {
  let as: TestAuthServer;
  before(async () => {
    process.env.TEST_BATCH_PIN_GATEWAY = SECRET;
    as = await startTestAuthServer({
      clients: [{ client_id: 'pin-gateway', client_name: 'Gateway', client_secret_env: 'TEST_BATCH_PIN_GATEWAY', grant_types: ['client_credentials'], tool_pins: 'allowed' }],
      resources: [{ id: RESOURCE, name: 'Big MCP server', scopes: [{ name: 'big:use' }], resource_servers: ['pin-gateway'] }],
    });
  });
  after(() => as.close());

  const client = (secret = SECRET) => new PinClient({ issuer: as.issuer, clientId: 'pin-gateway', clientSecret: secret, resource: RESOURCE, firstUse: 'pin' });
  const tools = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `tool_${i}`, description: `Tool number ${i}. ${'x'.repeat(3000)}`, inputSchema: { type: 'object' } }));

  it('a first list over several batches is pinned as a whole; a tool added later is new', async () => {
    const listed = tools(40);
    assert.ok(JSON.stringify(listed).length > 2 * REPORT_MAX_BYTES, 'three batches at least');
    const answers = await client().check(listed.map((definition) => ({ name: definition.name, definition })));
    assert.equal(answers.size, 40);
    assert.deepEqual(new Set([...answers.values()].map((a) => a.verdict)), new Set(['pinned']));
    const firstUse = new Set((await as.store.toolPins.list({ resource: RESOURCE, limit: 100 })).map((pin) => pin.approvedBy));
    assert.equal(firstUse.size, 1, 'one list id for every batch');
    assert.match([...firstUse][0]!, /^first_use:[A-Za-z0-9]{32}$/);

    const again = await client().check([...listed, ...tools(41).slice(40)].map((definition) => ({ name: definition.name, definition })));
    assert.equal(again.get('tool_40')?.verdict, 'new', 'a later list is another list: no trust on first use for it');
    assert.equal(again.get('tool_0')?.verdict, 'pinned');
  });

  it('a client the AS refuses gets no verdicts: PinsUnavailable (the gateway fails closed)', async () => {
    await assert.rejects(client('wrong').check([{ name: 'tool_0' }]), PinsUnavailable);
  });
});
