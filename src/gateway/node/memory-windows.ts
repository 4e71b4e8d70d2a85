import type { RateLimitOutcome } from '../rate-limits.ts';

const ALLOWED: RateLimitOutcome = Object.freeze({ allowed: true, msBeforeNext: 0 });

/**
 * Fixed windows in this process's memory, counted synchronously: the Node gateway's rate limits
 * without Redis. The same counting as rate-limiter-flexible's `RateLimiterMemory` (a window opens
 * at a key's first request and lasts `windowMs`; the request that makes the count pass `points` and
 * every later one in the window are refused, told how long until it ends), which
 * test/gateway/memory-windows.test.ts checks against that library on random traffic. Written here
 * because the library answers through a promise (and a timer per new key): on the gateway's hot
 * path a call's limit is then counted without a microtask (docs/gateway.md "Performance").
 *
 * Ended windows are swept at most once per window length, when a new window opens: memory holds
 * the keys of about the last two windows, without a timer.
 */
export class MemoryWindows {
  private readonly windows = new Map<string, { count: number; endsAt: number }>();
  private nextSweep = 0;

  constructor(
    private readonly points: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  consume(key: string): RateLimitOutcome {
    const now = this.now();
    const window = this.windows.get(key);
    if (window !== undefined && window.endsAt > now) {
      window.count++;
      return window.count <= this.points ? ALLOWED : { allowed: false, msBeforeNext: window.endsAt - now };
    }
    if (now >= this.nextSweep) this.sweep(now);
    this.windows.set(key, { count: 1, endsAt: now + this.windowMs });
    return this.points >= 1 ? ALLOWED : { allowed: false, msBeforeNext: this.windowMs };
  }

  /** Keys held (for tests: ended windows do not pile up). */
  get size(): number {
    return this.windows.size;
  }

  private sweep(now: number): void {
    for (const [key, window] of this.windows) if (window.endsAt <= now) this.windows.delete(key);
    this.nextSweep = now + this.windowMs;
  }
}
