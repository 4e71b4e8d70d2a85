import type { RememberRiskConfig } from '../../config/remember-schema.ts';

/**
 * What is known about a sign-in when its risk is judged (docs/browser-sessions.md). Gathered from
 * local signals only; an external evaluator receives the same object and may ignore any of it.
 */
export interface RiskSignals {
  /** `sign_in`: a password sign-in with the box ticked (may the cookie be set?); `use`: a later visit with the cookie. */
  phase: 'sign_in' | 'use';
  sub: string;
  /** Epoch seconds. */
  at: number;
  current: RiskContext;
  /** The last trusted context: the remembered sign-in's last use (`use`), the account's last sign-in (`sign_in`). */
  previous?: RiskContext & { at: number };
  /**
   * `known`: this browser's device cookie signed in to the account before (`sign_in`) or is the
   * one the remembered sign-in is bound to (`use`); `new`: never seen for the account; `mismatch`:
   * at use, absent or another one (the remember cookie travelled without it).
   */
  device: 'known' | 'new' | 'mismatch';
  /** Sign-ins of the account within the velocity window, this one included. */
  recentSignIns: number;
  /** Wrong passwords for the account within the failed-attempts window. */
  recentFailures: number;
}

export interface RiskContext {
  /** The client address's IPv4 /24 or IPv6 /48, e.g. `203.0.113.0/24`. */
  addressPrefix?: string;
  /** Browser family and operating system, versions left out: `Chrome on Linux`. */
  userAgent?: string;
  /** ISO 3166-1 alpha-2, from `remember_me.risk.country_header` of a trusted proxy. */
  country?: string;
}

export type RiskLevel = 'low' | 'medium' | 'high';

export interface RiskAssessment {
  /** 0 (no risk seen) to 100. */
  score: number;
  /** Only `low` sets or uses the remember cookie. */
  level: RiskLevel;
  /** Why, as short names (`address_changed`, `new_device`): audited, never shown to the user. */
  reasons: string[];
}

/**
 * Judges a sign-in's risk. The built-in one (`builtInRiskEvaluator`) scores local signals; pass
 * another to `startAuthServer(config, { riskEvaluator })` to ask a risk service instead. A thrown
 * error or a rejected promise counts as high risk: the user signs in with the password, never blocked.
 *
 * @example
 * const riskEvaluator: RiskEvaluator = {
 *   async evaluate(signals) {
 *     const res = await fetch('https://risk.example/score', { method: 'POST', body: JSON.stringify(signals), signal: AbortSignal.timeout(2000) });
 *     const { score } = (await res.json()) as { score: number };
 *     return { score, level: score < 30 ? 'low' : score < 70 ? 'medium' : 'high', reasons: ['risk.example'] };
 *   },
 * };
 */
export interface RiskEvaluator {
  evaluate(signals: RiskSignals): RiskAssessment | Promise<RiskAssessment>;
}

/** The level of a score under the configured thresholds. */
export function levelOf(score: number, risk: Pick<RememberRiskConfig, 'medium_at' | 'high_at'>): RiskLevel {
  return score >= risk.high_at ? 'high' : score >= risk.medium_at ? 'medium' : 'low';
}

/**
 * The built-in evaluator: each signal that fires adds its weight (`remember_me.risk.weights`), the
 * sum capped at 100, and the thresholds turn the score into a level. Changes are measured against
 * the last trusted context, so the first sign-in of an account has nothing to differ from.
 */
export function builtInRiskEvaluator(risk: RememberRiskConfig): RiskEvaluator {
  const w = risk.weights;
  return {
    evaluate(s) {
      const fired: [string, number][] = [];
      if (s.device === 'new') fired.push(['new_device', w.new_device]);
      if (s.device === 'mismatch') fired.push(['device_mismatch', w.device_mismatch]);
      const before = s.previous;
      if (before) {
        if (changed(before.addressPrefix, s.current.addressPrefix)) fired.push(['address_changed', w.address_changed]);
        if (changed(before.userAgent, s.current.userAgent)) fired.push(['user_agent_changed', w.user_agent_changed]);
        if (before.country && s.current.country && before.country !== s.current.country) {
          const soon = s.at - before.at < risk.travel_window_hours * 3600;
          fired.push(soon ? ['impossible_travel', w.impossible_travel] : ['country_changed', w.country_changed]);
        }
      }
      if (s.recentSignIns >= risk.velocity.max_sign_ins) fired.push(['velocity', w.velocity]);
      if (s.recentFailures >= risk.failed_attempts.max) fired.push(['failed_attempts', w.failed_attempts]);
      const score = Math.min(100, fired.reduce((sum, [, points]) => sum + points, 0));
      return { score, level: levelOf(score, risk), reasons: fired.map(([name]) => name) };
    },
  };
}

/** A value that was known and is now different (or gone); unknown before is no change. */
const changed = (before: string | undefined, now: string | undefined) => before !== undefined && before !== now;
