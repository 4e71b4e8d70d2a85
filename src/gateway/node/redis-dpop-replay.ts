import type { Redis } from 'ioredis';
import { DpopReplayUnavailable, type DpopReplayStore } from '../dpop.ts';

/**
 * DPoP proof `jti`s (RFC 9449 §11.1) shared by every gateway with the same Redis and key prefix:
 * a proof accepted by one instance is refused by all of them. One `SET NX EX` per proof; the key
 * is already a hash (`dpop:<jkt>:<sha256(jti)>`). A Redis error is DpopReplayUnavailable: the
 * request is refused with 503, never let through unchecked.
 */
export class RedisDpopReplay implements DpopReplayStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async claim(key: string, ttlSeconds: number): Promise<boolean> {
    let answer: string | null;
    try {
      answer = await this.redis.set(`${this.prefix}:${key}`, '1', 'EX', Math.max(1, Math.ceil(ttlSeconds)), 'NX');
    } catch (error) {
      throw new DpopReplayUnavailable(`the DPoP replay store (Redis) cannot be reached: ${(error as Error).message}`);
    }
    return answer === 'OK';
  }
}
