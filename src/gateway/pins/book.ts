import { pinnedDefinition, toolHash, type ToolDefinition } from '../../core/tool-hash.ts';
import { injectionFlags } from '../../core/tool-injection.ts';
import { newListId, PinsUnavailable, type PinAnswer, type PinClient, type PinQuery } from './client.ts';

/**
 * A route's view of its tool pins (docs/gateway.md "Tool pinning"): verdicts the AS gave, cached
 * per tool and definition hash (approved ones for `cache_seconds`, others for
 * `negative_cache_seconds`), so a steady tools/list costs no AS call; the hash each tool was last
 * listed with, which a tools/call is judged by; and the last approved hash of each tool, which
 * keeps pinned tools usable while the AS cannot be reached (everything else then fails closed);
 * and the cursors of paginated listings in progress, so that the pages of one listing share its
 * `list_id` at the AS (trust on first use then spans them: `pageListing`).
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

/**
 * How long after a paginated listing's first page its later pages still belong to it (and may be
 * trusted on first use with it). Short: a client follows `nextCursor` at once; a page asked for
 * later is judged on its own (its tools `new` once the resource has pins). The AS bounds it too.
 */
export const LISTING_WINDOW_MS = 60_000;
/** Cursors of listings in progress remembered at most (per route). */
const MAX_LISTINGS = 1_000;

export class PinBook {
  private readonly verdicts = new Map<string, { answer: PinAnswer & { resourcePinned?: boolean }; until: number }>();
  private readonly flagsByHash = new Map<string, string[]>();
  private readonly listed = new Map<string, string>();
  private readonly approved = new Map<string, string>();
  /** `<caller>\0<cursor>` → the listing that cursor continues (each cursor used once). */
  private readonly listings = new Map<string, { id: string; until: number }>();

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

  /**
   * The listing a tools/list page belongs to (its `list_id` at the AS), for trust on first use
   * across the pages of one paginated listing. A first page (no `cursor`) that has a `nextCursor`
   * starts a listing; a later page belongs to it only if its `cursor` is one this route gave the
   * same `caller` (MCP session and principal) as the `nextCursor` of that listing's previous page,
   * within LISTING_WINDOW_MS of its first page, once. Anything else — a cursor never seen here, seen
   * by another caller or another instance, used before, or too late — belongs to no listing. The
   * AS then trusts the listing's tools only while every pin of the resource is from that listing.
   */
  pageListing(caller: string, cursor: string | undefined, nextCursor: string | undefined): string | undefined {
    const now = this.now();
    let listing: { id: string; until: number } | undefined;
    if (cursor === undefined) {
      if (nextCursor !== undefined) listing = { id: newListId(), until: now + LISTING_WINDOW_MS };
    } else {
      const key = `${caller}\0${cursor}`;
      listing = this.listings.get(key);
      this.listings.delete(key);
      if (listing && listing.until <= now) listing = undefined;
    }
    if (listing && nextCursor !== undefined) {
      if (this.listings.size >= MAX_LISTINGS) {
        for (const [key, entry] of this.listings) if (entry.until <= now) this.listings.delete(key);
        // Still full: the oldest listing in progress loses its next page's trust (judged alone, fail safe).
        if (this.listings.size >= MAX_LISTINGS) this.listings.delete(this.listings.keys().next().value!);
      }
      this.listings.set(`${caller}\0${nextCursor}`, listing);
    }
    return listing?.id;
  }

  /**
   * The verdict of each tool of a tools/list result; reports what the cache does not know (with
   * `listId`, as part of that listing: `pageListing`). `unavailable` carries the AS failure.
   */
  async judgeList(tools: unknown[], listId?: string): Promise<{ tools: ListedTool[]; unavailable?: string }> {
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
      const answers = await this.client.check(
        misses.map((miss) => miss.query),
        listId,
      );
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
