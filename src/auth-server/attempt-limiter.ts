import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';

/** At most `attempts` per key in `perSeconds` (sign-in guesses per account); a success resets it. */
export function attemptLimiter(options: { attempts: number; perSeconds: number }) {
  const limiter = new RateLimiterMemory({ points: options.attempts, duration: options.perSeconds });
  return {
    async allow(key: string): Promise<boolean> {
      try {
        await limiter.consume(key);
        return true;
      } catch (error) {
        if (error instanceof RateLimiterRes) return false;
        throw error;
      }
    },
    async reset(key: string): Promise<void> {
      await limiter.delete(key);
    },
  };
}
