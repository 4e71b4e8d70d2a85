import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { basic, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { needsRedis } from '../helpers/services.ts';
import { createDpopProof, generateDpopKey, type DpopKey } from '../../src/core/dpop.ts';

/**
 * DPoP across authorization server instances behind one issuer (RFC 9449 §8, §11.1): server nonces
 * are stateless, so instances sharing the key (MANDATE_DPOP_NONCE_KEY) accept each other's, and an
 * instance with another key does not; the proof jti replay cache is Redis when REDIS_URL is set, so
 * a proof used at one instance is refused at the other.
 */
const SECRET = 'dpop-inst-secret-0123456789abcdef01234';
const conf = { authorization: basic('conf', SECRET) };
const clients = [{ client_id: 'conf', client_secret_env: 'TEST_DPOP_INST_SECRET', grant_types: ['client_credentials'] }] as never;

async function lastAudit(as: TestAuthServer, type: string) {
  await as.ctx.audit.flush();
  return (await as.store.audit.list({ type }))[0];
}

describe('DPoP nonces and replay across instances', () => {
  let a: TestAuthServer;
  let b: TestAuthServer;
  let lone: TestAuthServer;
  let key: DpopKey;
  /** Where an instance listens (its issuer may be another's). */
  const token = (as: TestAuthServer) => `http://127.0.0.1:${as.ctx.config.listen.port}/token`;
  const form = (as: TestAuthServer) => ({ grant_type: 'client_credentials', resource: as.resource, scope: 'mcp:read' });

  before(async () => {
    process.env.TEST_DPOP_INST_SECRET = SECRET;
    process.env.TEST_DPOP_SHARED_NONCE_KEY = 'a-shared-nonce-key-of-enough-bytes';
    const dpop = { enabled: true, require_nonce: true, nonce_key_env: 'TEST_DPOP_SHARED_NONCE_KEY' };
    a = await startTestAuthServer({ dpop, clients });
    // The second instance answers at its own port under the first one's issuer (as behind a load balancer).
    b = await startTestAuthServer({ dpop, clients, issuer: a.issuer });
    // Another deployment's key: <data_dir>/secrets/dpop-nonce.key of its own.
    lone = await startTestAuthServer({ dpop: { enabled: true, require_nonce: true, nonce_key_env: 'TEST_DPOP_UNSET_NONCE_KEY' }, clients, issuer: a.issuer });
    key = await generateDpopKey();
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await lone?.close();
  });

  it('a nonce from one instance is accepted by another with the same key, refused by one with another key', async () => {
    const htu = `${a.issuer}/token`;
    const first = await postForm(token(a), form(a), { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu }) });
    assert.equal(first.json.error, 'use_dpop_nonce');
    const nonce = first.headers.get('dpop-nonce')!;
    const atB = await postForm(token(b), form(b), { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu, nonce }) });
    assert.equal(atB.status, 200, atB.text);
    assert.equal(atB.json.token_type, 'DPoP');
    const atLone = await postForm(token(lone), form(lone), { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu, nonce }) });
    assert.equal(atLone.status, 400);
    assert.equal(atLone.json.error, 'use_dpop_nonce');
    assert.match((await lastAudit(lone, 'token.dpop_refused'))?.reason ?? '', /stale or not ours/);
    // The instance without the environment variable made its own key file, readable by its owner only.
    assert.equal(statSync(join(lone.dataDir, 'secrets', 'dpop-nonce.key')).mode & 0o777, 0o600);
  });

  it('a proof used at one instance is refused at the other (jti in Redis)', needsRedis(), async () => {
    const htu = `${a.issuer}/token`;
    const first = await postForm(token(a), form(a), { ...conf, dpop: await createDpopProof(key, { htm: 'POST', htu }) });
    const nonce = first.headers.get('dpop-nonce')!;
    const proof = await createDpopProof(key, { htm: 'POST', htu, nonce });
    const once = await postForm(token(a), form(a), { ...conf, dpop: proof });
    assert.equal(once.status, 200, once.text);
    const replayed = await postForm(token(b), form(b), { ...conf, dpop: proof });
    assert.equal(replayed.status, 400);
    assert.equal(replayed.json.error, 'invalid_dpop_proof');
    assert.match((await lastAudit(b, 'token.dpop_refused'))?.reason ?? '', /jti was used before/);
  });
});
