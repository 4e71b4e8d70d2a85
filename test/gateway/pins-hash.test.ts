import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { HASHED_TOOL_FIELDS, changedFields, pinnedDefinition, toolHash } from '../../src/core/tool-hash.ts';

const tool = {
  name: 'transfer',
  title: 'Transfer money',
  description: 'Moves money between accounts.',
  inputSchema: { type: 'object', properties: { amount: { type: 'number' }, to: { type: 'string' } }, required: ['amount', 'to'] },
  outputSchema: { type: 'object', properties: { ok: { type: 'boolean' } } },
  annotations: { destructiveHint: true, readOnlyHint: false },
};

describe('tool pinning: the canonical hash of a tool definition', () => {
  it('is base64url(SHA-256) of the RFC 8785 serialization of the pinned fields', async () => {
    const hash = await toolHash(tool);
    assert.match(hash, /^[A-Za-z0-9_-]{43}$/);
    // RFC 8785: keys sorted by UTF-16 code units, no white space.
    const canonical =
      '{"annotations":{"destructiveHint":true,"readOnlyHint":false},"description":"Moves money between accounts.","inputSchema":{"properties":{"amount":{"type":"number"},"to":{"type":"string"}},"required":["amount","to"],"type":"object"},"name":"transfer","outputSchema":{"properties":{"ok":{"type":"boolean"}},"type":"object"},"title":"Transfer money"}';
    assert.equal(hash, createHash('sha256').update(canonical).digest('base64url'));
  });

  it('does not depend on key order, at any depth', async () => {
    const reordered = {
      annotations: { readOnlyHint: false, destructiveHint: true },
      outputSchema: { properties: { ok: { type: 'boolean' } }, type: 'object' },
      inputSchema: { required: ['amount', 'to'], properties: { to: { type: 'string' }, amount: { type: 'number' } }, type: 'object' },
      description: 'Moves money between accounts.',
      title: 'Transfer money',
      name: 'transfer',
    };
    assert.equal(await toolHash(reordered), await toolHash(tool));
  });

  it('changes with each pinned field', async () => {
    const base = await toolHash(tool);
    const seen = new Set([base]);
    for (const field of HASHED_TOOL_FIELDS) {
      const changed = { ...tool, [field]: field === 'name' || field === 'title' || field === 'description' ? `${tool[field]}!` : { changed: field } };
      const hash = await toolHash(changed);
      assert.notEqual(hash, base, `${field} changes the hash`);
      assert.ok(!seen.has(hash));
      seen.add(hash);
      assert.deepEqual(changedFields(pinnedDefinition(tool), pinnedDefinition(changed)!), [field]);
      // Removing the field is a change too.
      const { [field]: _removed, ...without } = tool;
      if (field !== 'name') assert.notEqual(await toolHash(without), base, `removing ${field} changes the hash`);
    }
  });

  it('ignores _meta and icons (documented: per-response values for clients, not the model)', async () => {
    const base = await toolHash(tool);
    assert.equal(await toolHash({ ...tool, _meta: { 'x/trace': 'abc' }, icons: [{ src: 'https://x.example/i.png' }] }), base);
    assert.equal(await toolHash({ ...tool, extra: undefined }), base);
  });

  it('refuses a definition without a string name', async () => {
    await assert.rejects(toolHash({ description: 'no name' }), TypeError);
    assert.equal(pinnedDefinition(['x']), undefined);
  });
});
