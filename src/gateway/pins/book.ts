import { pinnedDefinition, toolHash, type ToolDefinition } from '../../core/tool-hash.ts';
import { injectionFlags } from '../../core/tool-injection.ts';
import { PinsUnavailable, type PinAnswer, type PinClient, type PinQuery } from './client.ts';

/**
 * A route's view of its tool pins (docs/gateway.md "Tool pinning"): verdicts the AS gave, cached
 * per tool and definition hash (approved ones for `cache_seconds`, others for
 * `negative_cache_seconds`), so a steady tools/list costs no AS call; the hash each tool was last
 * listed with, which a tools/call is judged by; and the last approved hash of each tool, which
 * keeps pinned tools usable while the AS cannot be reached (everything else then fails closed).
 */

export interface PinTimes {
  cacheSeconds: number;
  negativeCacheSeconds: number;
}

/** What the route knows of one listed tool. */
export interface ListedTool {
  name: string;
  hash?: string;
  /** pinned: matches the approved definition; unavailable: the AS could not be asked and no approved hash is known; invalid: no hash could be computed. */
  verdict: 'pinned' | 'new' | 'changed' | 'unavailable' | 'invalid';
  approvedHash?: string;
  /** The injection heuristic's flags (src/core/tool-injection.ts). */
  flags: string[];
}

/**
 * How a call is judged: pinned (approved), new/changed (waiting for an admin), unknown (never
 * listed on a resource that has pins), none (nothing pinned on the resource yet), unavailable.
 */
export type CallVerdict = 'pinned' | 'new' | 'changed' | 'unknown' | 'none' | 'unavailable';

export interface CallJudgement {
  verdict: CallVerdict;
  hash?: string;
  approvedHash?: string;
  /** Why the AS could not be asked (verdict unavailable). */
  reason?: string;
}

/** Entries cached before the cache is emptied (bounds memory against an upstream churning definitions). */
const MAX_CACHED = 10_000;

export class PinBook {
  private readonly verdicts = new Map<string, { answer: PinAnswer & { resourcePinned?: boolean }; until: number }>();
  private readonly flagsByHash = new Map<string, string[]>();
  private readonly listed = new Map<string, string>();
  private readonly approved = new Map<string, string>();

  constructor(
    private readonly client: PinClient,
    private readonly times: PinTimes,
    private readonly now: () => number = () => Date.now(),
  ) {}

  private remember(key: string, answer: PinAnswer & { resourcePinned?: boolean }, name: string): void {
    if (this.verdicts.size >= MAX_CACHED) this.verdicts.clear();
    const seconds = answer.verdict === 'pinned' ? this.times.cacheSeconds : this.times.negativeCacheSeconds;
    if (seconds > 0) this.verdicts.set(key, { answer, until: this.now() + seconds * 1000 });
    if (answer.approvedHash !== undefined) this.approved.set(name, answer.approvedHash);
  }

  private cached(key: string) {
    const entry = this.verdicts.get(key);
    if (!entry) return undefined;
    if (entry.until > this.now()) return entry.answer;
    this.verdicts.delete(key);
    return undefined;
  }

  private flags(hash: string, definition: ToolDefinition): string[] {
    let flags = this.flagsByHash.get(hash);
    if (!flags) {
      if (this.flagsByHash.size >= MAX_CACHED) this.flagsByHash.clear();
      flags = injectionFlags(definition);
      this.flagsByHash.set(hash, flags);
    }
    return flags;
  }

  /** The verdict of each tool of a tools/list result; reports what the cache does not know. `unavailable` carries the AS failure. */
  async judgeList(tools: unknown[]): Promise<{ tools: ListedTool[]; unavailable?: string }> {
    const listed: ListedTool[] = [];
    const misses: { tool: ListedTool; query: PinQuery }[] = [];
    for (const raw of tools) {
      const definition = pinnedDefinition(raw);
      if (!definition) continue;
      let hash: string;
      try {
        hash = await toolHash(definition);
      } catch {
        listed.push({ name: definition.name, verdict: 'invalid', flags: [] });
        continue;
      }
      const tool: ListedTool = { name: definition.name, hash, verdict: 'unavailable', flags: this.flags(hash, definition) };
      listed.push(tool);
      if (this.listed.size >= MAX_CACHED) this.listed.clear();
      this.listed.set(definition.name, hash);
      const answer = this.cached(`${definition.name}\0${hash}`);
      if (answer) Object.assign(tool, { verdict: answer.verdict === 'unknown' ? 'new' : answer.verdict, approvedHash: answer.approvedHash });
      else misses.push({ tool, query: { name: definition.name, hash, definition } });
    }
    if (misses.length === 0) return { tools: listed };
    try {
      const answers = await this.client.check(misses.map((miss) => miss.query));
      for (const { tool } of misses) {
        const answer = answers.get(tool.name)!;
        this.remember(`${tool.name}\0${tool.hash}`, answer, tool.name);
        Object.assign(tool, { verdict: answer.verdict === 'unknown' ? 'new' : answer.verdict, approvedHash: answer.approvedHash });
      }
      return { tools: listed };
    } catch (error) {
      if (!(error instanceof PinsUnavailable)) throw error;
      // Fail closed, except for what was approved when the AS last answered.
      for (const { tool } of misses) if (this.approved.get(tool.name) === tool.hash) Object.assign(tool, { verdict: 'pinned', approvedHash: tool.hash });
      return { tools: listed, unavailable: error.message };
    }
  }

  /** The verdict for a call of `name`: by the definition this route last listed, else by the pin at the AS. */
  async judgeCall(name: string): Promise<CallJudgement> {
    const hash = this.listed.get(name);
    const key = `${name}\0${hash ?? ''}`;
    const judgement = (answer: PinAnswer & { resourcePinned?: boolean }): CallJudgement => ({
      verdict: answer.verdict === 'unknown' ? (answer.resourcePinned ? 'unknown' : 'none') : answer.verdict,
      ...(hash ? { hash } : {}),
      ...(answer.approvedHash ? { approvedHash: answer.approvedHash } : {}),
    });
    const cached = this.cached(key);
    if (cached) return judgement(cached);
    try {
      const answers = await this.client.check([{ name, ...(hash ? { hash } : {}) }]);
      const answer = { ...answers.get(name)!, ...(answers.resourcePinned !== undefined ? { resourcePinned: answers.resourcePinned } : {}) };
      // "Nothing pinned yet" is not cached: the first list may pin the resource any moment.
      if (!(answer.verdict === 'unknown' && !answer.resourcePinned)) this.remember(key, answer, name);
      return judgement(answer);
    } catch (error) {
      if (!(error instanceof PinsUnavailable)) throw error;
      if (hash !== undefined && this.approved.get(name) === hash) return { verdict: 'pinned', hash, approvedHash: hash };
      return { verdict: 'unavailable', ...(hash ? { hash } : {}), reason: error.message };
    }
  }
}
