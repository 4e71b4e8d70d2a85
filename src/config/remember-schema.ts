import { z } from 'zod';

/**
 * `remember_me`: the "Keep me signed in" box and the risk that decides it (docs/browser-sessions.md).
 * Off by default: a cookie that signs a browser in for weeks is a deployment decision (shared
 * computers, rules that ask for the password every day), not something an upgrade should switch on.
 */
const weight = z.number().int().min(0).max(100);

export const rememberRiskSchema = z.strictObject({
  medium_at: z.number().int().min(1).max(100).default(30).describe('Score (0-100) from which the risk is medium. Only a low risk (below this) sets or uses the remember cookie.'),
  high_at: z.number().int().min(1).max(100).default(70).describe('Score from which the risk is high (audited as such; medium already refuses).'),
  weights: z
    .strictObject({
      new_device: weight.default(20).describe('At sign-in: this browser (its device cookie) never signed in to the account. Alone it stays low, so a first sign-in can be remembered.'),
      device_mismatch: weight.default(100).describe('At use: the device cookie is missing or is not the one the remembered sign-in is bound to (the cookie was copied elsewhere).'),
      address_changed: weight.default(40).describe('The client address left the IPv4 /24 (IPv6 /48) of the last trusted sign-in.'),
      user_agent_changed: weight.default(40).describe('The browser family or operating system differs from the last trusted sign-in (versions are ignored).'),
      country_changed: weight.default(40).describe('The country (country_header) differs from the last trusted sign-in, longer ago than travel_window_hours.'),
      impossible_travel: weight.default(80).describe('The country differs from that of a trusted sign-in less than travel_window_hours ago.'),
      velocity: weight.default(40).describe('The account signed in velocity.max_sign_ins times or more within velocity.window_seconds.'),
      failed_attempts: weight.default(40).describe('failed_attempts.max or more wrong passwords for the account within failed_attempts.window_seconds.'),
    })
    .prefault({})
    .describe('Points each signal adds to the score (the sum is capped at 100).'),
  country_header: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/)
    .optional()
    .describe('A header carrying the client\'s country (e.g. CF-IPCountry), believed only from trusted_proxies. Unset: no country signals.'),
  travel_window_hours: z.number().int().min(1).default(12).describe('A country change sooner than this after a trusted sign-in counts as impossible travel.'),
  velocity: z
    .strictObject({
      max_sign_ins: z.number().int().min(2).default(6).describe('Sign-ins (this one included) from which the velocity signal fires.'),
      window_seconds: z.number().int().min(1).default(600).describe('The window they are counted in (10 minutes).'),
    })
    .prefault({})
    .describe('Sign-ins of one account (password or remembered) that count as too fast.'),
  failed_attempts: z
    .strictObject({
      max: z.number().int().min(1).default(3).describe('Wrong passwords from which the failed_attempts signal fires.'),
      window_seconds: z.number().int().min(1).default(900).describe('The window they are counted in (15 minutes).'),
    })
    .prefault({})
    .describe('Wrong passwords for one account that make its next sign-ins risky.'),
}).refine((risk) => risk.medium_at <= risk.high_at, { message: 'medium_at must not be above high_at', path: ['medium_at'] });

export const rememberMeSchema = z.strictObject({
  enabled: z
    .boolean()
    .default(false)
    .describe('Offer "Keep me signed in" on the login page. Off by default: a persistent sign-in is a deployment decision (shared computers, daily password rules); the demo turns it on.'),
  lifetime_days: z.number().int().min(1).max(400).default(30).describe('Absolute lifetime of a remembered sign-in, from the password sign-in; rotation never extends it. 400 is the longest browsers keep a cookie.'),
  risk: rememberRiskSchema.prefault({}).describe('The built-in risk evaluator (docs/browser-sessions.md); startAuthServer({ riskEvaluator }) replaces it.'),
});

export type RememberMeConfig = z.output<typeof rememberMeSchema>;
export type RememberRiskConfig = z.output<typeof rememberRiskSchema>;
