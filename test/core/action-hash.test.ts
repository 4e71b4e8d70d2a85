import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { actionHash, pickBound } from '../../src/core/action-hash.ts';

const sha256url = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64url');

describe('action hash (issue 14 contract: base64url(SHA-256(JCS({ tool, arguments }))))', () => {
  it('matches a known vector', async () => {
    // Computed outside the code under test: printf '%s' '<json>' | openssl dgst -sha256 -binary | base64url
    assert.equal(await actionHash('transfer', { to: 'bob', amount: 250.5 }), 'F93cbSUsDpHpqViT8XcFW8yEIwqBjPrJoeSjdIKIgvw');
    assert.equal(await actionHash('ping', {}), 'RK1flyUA5YrmliPJ88Od38fvD05pKuG0_wAO6YCJVpk');
  });

  it('does not depend on key order, at any depth, nor on how the JSON was spaced', async () => {
    const a = JSON.parse('{ "to": "bob", "amount": 250, "meta": { "z": [1, {"b": 2, "a": 1}], "a": null } }') as Record<string, unknown>;
    const b = JSON.parse('{"meta":{"a":null,"z":[1,{"a":1,"b":2}]},"amount":250,"to":"bob"}') as Record<string, unknown>;
    assert.equal(await actionHash('transfer', a), await actionHash('transfer', b));
  });

  it('hashes the RFC 8785 canonical form: sorted keys (UTF-16 order), ES6 numbers, minimal escapes', async () => {
    const args = { '€': 1, b: 1e21, a: 0.000001, é: 'é\n', '\u0080': -0, A: 100.0 };
    // RFC 8785 §3.2.3: keys sorted by UTF-16 code units; §3.2.2.3: numbers as ES6 Number.toString (-0 → 0).
    const canonical = '{"arguments":{"A":100,"a":0.000001,"b":1e+21,"\u0080":0,"é":"é\\n","€":1},"tool":"t"}';
    assert.equal(await actionHash('t', args), sha256url(canonical));
  });

  it('tells different actions apart: another amount, another tool, an added argument', async () => {
    const base = await actionHash('transfer', { to: 'bob', amount: 250 });
    assert.notEqual(await actionHash('transfer', { to: 'bob', amount: 251 }), base);
    assert.notEqual(await actionHash('transfer', { to: 'bob', amount: '250' }), base);
    assert.notEqual(await actionHash('pay', { to: 'bob', amount: 250 }), base);
    assert.notEqual(await actionHash('transfer', { to: 'bob', amount: 250, memo: 'x' }), base);
  });

  it('binds only the named arguments when binds is given', async () => {
    const bound = await actionHash('transfer', { to: 'bob', amount: 250, memo: 'rent' }, ['amount', 'to']);
    assert.equal(bound, await actionHash('transfer', { amount: 250, to: 'bob', memo: 'other' }, ['to', 'amount']));
    assert.equal(bound, await actionHash('transfer', { amount: 250, to: 'bob' }));
    assert.notEqual(bound, await actionHash('transfer', { amount: 250, to: 'eve', memo: 'rent' }, ['amount', 'to']));
  });

  it('pickBound keeps the named arguments that are present, and only own ones', () => {
    assert.deepEqual(pickBound({ amount: 250, to: 'bob', memo: 'x' }, ['to', 'amount', 'missing']), { to: 'bob', amount: 250 });
    assert.deepEqual(pickBound(JSON.parse('{"__proto__": {"x": 1}, "a": 1}') as Record<string, unknown>, ['__proto__', 'toString', 'a']), { a: 1, ['__proto__' as string]: { x: 1 } });
  });

  it('refuses what JSON cannot carry', async () => {
    await assert.rejects(actionHash('t', { x: Number.NaN }));
    await assert.rejects(actionHash('t', { x: '\ud800' }));
  });
});
