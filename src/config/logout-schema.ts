import { z } from 'zod';

/**
 * Signing out (docs/browser-sessions.md#signing-out-rp-initiated-and-back-channel-logout): how the
 * authorization server delivers OpenID Connect Back-Channel Logout 1.0 tokens to clients.
 */
export const logoutConfigSchema = z
  .strictObject({
    backchannel_timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(30_000)
      .default(5000)
      .describe("Deadline of one delivery of a logout token to a client's backchannel_logout_uri (connect, send, answer)."),
    backchannel_attempts: z
      .number()
      .int()
      .min(1)
      .max(10)
      .default(3)
      .describe('Deliveries tried per client before giving up (audited as logout.backchannel_failed). Retried: no answer, a timeout, 429 or a 5xx; never another 4xx.'),
    backchannel_retry_delay_ms: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .default(1000)
      .describe('Wait before the first retry; each later retry waits twice as long as the one before.'),
  })
  .prefault({})
  .describe('Signing out: the delivery of back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0). Deliveries run in the background: the browser is redirected at once.');

export type LogoutConfig = z.output<typeof logoutConfigSchema>;
