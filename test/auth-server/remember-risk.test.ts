import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rememberMeSchema } from '../../src/config/remember-schema.ts';
import { builtInRiskEvaluator, levelOf, type RiskAssessment, type RiskSignals } from '../../src/auth-server/remember/risk.ts';
import { addressPrefix } from '../../src/auth-server/remember/signals.ts';
import { userAgentFamily } from '../../src/auth-server/remember/user-agent.ts';
import { Hono } from 'hono';
import type { ServerContext } from '../../src/auth-server/context.ts';
import { deleteRememberCookie, ensureDevice, setRememberCookie } from '../../src/auth-server/remember/cookies.ts';

/**
 * The built-in risk evaluator of "Keep me signed in" as a pure function: each signal alone, the
 * thresholds, the defaults as shipped; and the small parsers its signals rely on.
 */
const shipped = rememberMeSchema.parse({});
const evaluate = (signals: Partial<RiskSignals>, risk = shipped.risk): RiskAssessment =>
  builtInRiskEvaluator(risk).evaluate({
    phase: 'use',
    sub: 'u1',
    at: 1_000_000,
    current: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux' },
    previous: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux', at: 1_000_000 - 3600 },
    device: 'known',
    recentSignIns: 1,
    recentFailures: 0,
    ...signals,
  }) as RiskAssessment;

describe('remember me: the built-in risk evaluator', () => {
  it('is off by default, 30 days, thresholds 30 and 70', () => {
    assert.equal(shipped.enabled, false);
    assert.equal(shipped.lifetime_days, 30);
    assert.deepEqual([shipped.risk.medium_at, shipped.risk.high_at], [30, 70]);
    assert.equal(shipped.risk.country_header, undefined);
  });

  it('the same browser, place and device, nothing unusual: score 0, low', () => {
    assert.deepEqual(evaluate({}), { score: 0, level: 'low', reasons: [] });
  });

  it('a first sign-in from a new browser stays low (so it can be remembered), with its reason', () => {
    assert.deepEqual(evaluate({ phase: 'sign_in', previous: undefined, device: 'new' }), { score: 20, level: 'low', reasons: ['new_device'] });
  });

  it('a remember cookie without its device cookie is high risk', () => {
    assert.deepEqual(evaluate({ device: 'mismatch' }), { score: 100, level: 'high', reasons: ['device_mismatch'] });
  });

  it('each change alone refuses (medium): address /24, browser family, country after a long while', () => {
    assert.deepEqual(evaluate({ current: { addressPrefix: '198.51.100.0/24', userAgent: 'Chrome on Linux' } }), { score: 40, level: 'medium', reasons: ['address_changed'] });
    assert.deepEqual(evaluate({ current: { addressPrefix: '203.0.113.0/24', userAgent: 'Firefox on Windows' } }), { score: 40, level: 'medium', reasons: ['user_agent_changed'] });
    const twoDaysLater = { previous: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux', country: 'GB', at: 1_000_000 - 48 * 3600 } };
    assert.deepEqual(evaluate({ ...twoDaysLater, current: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux', country: 'SG' } }), { score: 40, level: 'medium', reasons: ['country_changed'] });
  });

  it('another country within the travel window is impossible travel: high', () => {
    const r = evaluate({ previous: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux', country: 'GB', at: 1_000_000 - 3600 }, current: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux', country: 'SG' } });
    assert.deepEqual(r, { score: 80, level: 'high', reasons: ['impossible_travel'] });
  });

  it('an unknown country on either side is no change', () => {
    assert.equal(evaluate({ current: { addressPrefix: '203.0.113.0/24', userAgent: 'Chrome on Linux', country: 'SG' } }).level, 'low');
  });

  it('velocity and recent failed attempts, at their thresholds and not below', () => {
    assert.deepEqual(evaluate({ recentSignIns: 6 }).reasons, ['velocity']);
    assert.deepEqual(evaluate({ recentSignIns: 5 }).reasons, []);
    assert.deepEqual(evaluate({ recentFailures: 3 }).reasons, ['failed_attempts']);
    assert.deepEqual(evaluate({ recentFailures: 2 }).reasons, []);
  });

  it('adds signals up, capped at 100', () => {
    const r = evaluate({ device: 'mismatch', current: { addressPrefix: '198.51.100.0/24', userAgent: 'Safari on iOS' }, recentFailures: 9 });
    assert.deepEqual(r, { score: 100, level: 'high', reasons: ['device_mismatch', 'address_changed', 'user_agent_changed', 'failed_attempts'] });
  });

  it('thresholds and weights are configurable', () => {
    const lenient = rememberMeSchema.parse({ risk: { medium_at: 50, weights: { address_changed: 10 } } }).risk;
    assert.deepEqual(evaluate({ current: { addressPrefix: '198.51.100.0/24', userAgent: 'Firefox on Linux' } }, lenient), { score: 50, level: 'medium', reasons: ['address_changed', 'user_agent_changed'] });
    assert.equal(evaluate({ current: { addressPrefix: '198.51.100.0/24', userAgent: 'Chrome on Linux' } }, lenient).level, 'low');
    assert.deepEqual([levelOf(29, shipped.risk), levelOf(30, shipped.risk), levelOf(69, shipped.risk), levelOf(70, shipped.risk)], ['low', 'medium', 'medium', 'high']);
  });

  it('refuses unknown keys and out-of-range values in its configuration', () => {
    assert.equal(rememberMeSchema.safeParse({ risk: { treshold: 3 } }).success, false);
    assert.equal(rememberMeSchema.safeParse({ lifetime_days: 0 }).success, false);
    assert.equal(rememberMeSchema.safeParse({ risk: { country_header: 'bad header' } }).success, false);
    assert.equal(rememberMeSchema.safeParse({ risk: { medium_at: 80, high_at: 70 } }).success, false);
  });
});

describe('remember me: signal parsers', () => {
  it('address prefixes: IPv4 /24, IPv6 /48, IPv4-mapped as IPv4', () => {
    assert.equal(addressPrefix('203.0.113.77'), '203.0.113.0/24');
    assert.equal(addressPrefix('::ffff:203.0.113.77'), '203.0.113.0/24');
    assert.equal(addressPrefix('2001:db8:abcd:12::1'), '2001:db8:abcd::/48');
    assert.equal(addressPrefix('2001:db8:abcd:ffff:1::9'), '2001:db8:abcd::/48');
    assert.equal(addressPrefix('unknown'), undefined);
  });

  it('user-agent families: browser and system, versions ignored', () => {
    const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
    assert.equal(userAgentFamily(chrome), 'Chrome on Linux');
    assert.equal(userAgentFamily(chrome.replace('131.0.0.0', '140.0.1.2')), 'Chrome on Linux');
    assert.equal(userAgentFamily('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36'), 'Chrome on Linux');
    assert.equal(userAgentFamily('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0'), 'Edge on Windows');
    assert.equal(userAgentFamily('Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0'), 'Firefox on Windows');
    assert.equal(userAgentFamily('Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1'), 'Safari on iOS');
    assert.equal(userAgentFamily('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15'), 'Safari on macOS');
    assert.equal(userAgentFamily('Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36'), 'Chrome on Android');
    assert.equal(userAgentFamily(undefined), 'Other on Other');
  });
});

describe('remember me: cookies over https', () => {
  it('carry the __Host- prefix: Secure, Path=/, no Domain, HttpOnly, SameSite=Lax', async () => {
    const ctx = { issuer: 'https://id.example', now: () => 1000 } as unknown as ServerContext;
    const app = new Hono()
      .get('/set', (c) => {
        ensureDevice(ctx, c);
        setRememberCookie(ctx, c, 'i'.repeat(22), 't'.repeat(43), 1000 + 86_400);
        return c.text('set');
      })
      .get('/delete', (c) => {
        deleteRememberCookie(ctx, c);
        return c.text('deleted');
      });
    const set = (await app.request('/set')).headers.getSetCookie();
    assert.match(set[0]!, /^__Host-mandate_device=[A-Za-z0-9_-]{32}; Max-Age=34560000; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
    assert.equal(set[1], `__Host-mandate_remember=${'i'.repeat(22)}.${'t'.repeat(43)}; Max-Age=86400; Path=/; HttpOnly; Secure; SameSite=Lax`);
    const deleted = (await app.request('/delete')).headers.getSetCookie();
    assert.match(deleted[0]!, /^__Host-mandate_remember=; Max-Age=0; Path=\/; Secure/);
  });
});
