import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EVALUATOR_TIMEOUT_MS, useRiskEvaluator } from '../../src/auth-server/remember/index.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { Browser, events, passwordSignIn, startRememberServer, subOf } from './remember-helpers.ts';

/**
 * A plugged-in risk evaluator that fails or hangs (security review of issue 15): the risk counts
 * as high (no remember cookie), and the password sign-in itself goes on, never blocked.
 */
describe('remember me: a failing risk evaluator fails closed, and never blocks the sign-in', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startRememberServer();
  });
  after(async () => as?.close());

  const signInWith = async (username: string, evaluate: () => Promise<never> | never) => {
    useRiskEvaluator(as.ctx, { evaluate });
    const browser = new Browser(as);
    const started = Date.now();
    const page = await passwordSignIn(as, browser, username);
    return { page, browser, elapsed: Date.now() - started };
  };

  it('an evaluator that throws: signed in, not remembered, audited evaluator_failed', async () => {
    const { page, browser } = await signInWith('ann', () => {
      throw new Error('risk service down');
    });
    assert.ok(page.external, 'back at the client');
    assert.equal(browser.jar.has('mandate_remember'), false);
    const [skipped] = await events(as, 'remember_me.skipped', await subOf(as, 'ann'));
    assert.deepEqual([skipped?.outcome, skipped?.reason], ['failure', 'risk high: evaluator_failed']);
  });

  it('an evaluator that never answers: the sign-in completes after the bound, not remembered, audited evaluator_failed', { timeout: EVALUATOR_TIMEOUT_MS + 7000 }, async () => {
    const { page, browser, elapsed } = await signInWith('ben', () => new Promise<never>(() => {}));
    assert.ok(page.external, 'back at the client');
    assert.ok(elapsed >= EVALUATOR_TIMEOUT_MS - 100 && elapsed < EVALUATOR_TIMEOUT_MS + 5000, `took ${elapsed} ms`);
    assert.equal(browser.jar.has('mandate_remember'), false);
    const [skipped] = await events(as, 'remember_me.skipped', await subOf(as, 'ben'));
    assert.deepEqual([skipped?.outcome, skipped?.reason], ['failure', 'risk high: evaluator_failed']);
  });
});
