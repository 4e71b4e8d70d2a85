import { basicAuthorization } from '../../core/encoding.ts';
import type { ToolDefinition } from '../../core/tool-hash.ts';

/**
 * The authorization server's pin endpoint as the gateway calls it (docs/gateway.md "Tool
 * pinning"): `POST <issuer>/tool-pins`, authenticated with the route's pins client
 * (client_secret_basic), as the approvals client calls `/transactions`.
 */

export type PinVerdict = 'pinned' | 'new' | 'changed' | 'unknown';

export interface PinAnswer {
  verdict: PinVerdict;
  hash?: string;
  approvedHash?: string;
}

export interface PinQuery {
  name: string;
  hash?: string;
  definition?: ToolDefinition;
}

export interface PinClientOptions {
  issuer: string;
  clientId: string;
  clientSecret: string;
  resource: string;
  firstUse: 'pin' | 'pending';
  /** The reviewed snapshot (`tool_pins.snapshot`): tool name → approved hash, sent with reports. */
  snapshot?: Record<string, string>;
  fetch?: typeof fetch;
  /** Per call; default 5 s. */
  timeoutMs?: number;
}

/** Verdicts by tool name; `resourcePinned` when a tool had no pin (whether the resource has any). */
export type PinAnswers = Map<string, PinAnswer> & { resourcePinned?: boolean };

/** The AS could not be reached, timed out, refused, or answered in a shape that cannot be trusted. */
export class PinsUnavailable extends Error {
  override name = 'PinsUnavailable';
}

/**
 * JSON bytes per report, under the AS's default body limit (request_limits.max_body_bytes, 64 KiB):
 * a longer list goes in several reports sharing a `list_id`, so trust on first use spans them.
 */
export const REPORT_MAX_BYTES = 48 * 1024;
const VERDICTS = new Set(['pinned', 'new', 'changed', 'unknown']);

/** A listing's id at the AS (`list_id`: 1 to 64 base64url characters): random, so no upstream or client can name another listing. */
export const newListId = () => crypto.randomUUID().replace(/-/g, '');

export class PinClient {
  private readonly endpoint: string;
  private readonly authorization: string;

  constructor(private readonly options: PinClientOptions) {
    this.endpoint = `${options.issuer.replace(/\/+$/, '')}/tool-pins`;
    this.authorization = basicAuthorization(options.clientId, options.clientSecret);
  }

  /**
   * Reports definitions (or asks about hashes or names); the verdict of each tool, by name. Throws
   * `PinsUnavailable`. `listId` names the listing the tools belong to (the pages of one paginated
   * tools/list, book.ts): without it, a report in several batches gets an id of its own.
   */
  async check(tools: PinQuery[], listId?: string): Promise<PinAnswers> {
    const batches: PinQuery[][] = [[]];
    let size = 0;
    for (const tool of tools) {
      const bytes = JSON.stringify(tool).length + 1;
      if (size + bytes > REPORT_MAX_BYTES && batches.at(-1)!.length > 0) {
        batches.push([]);
        size = 0;
      }
      batches.at(-1)!.push(tool);
      size += bytes;
    }
    listId ??= batches.length > 1 ? newListId() : undefined;
    const answers: PinAnswers = new Map();
    // In order: the first batch may pin on first use, the next ones then see this list's pins.
    for (const batch of batches) {
      if (batch.length === 0) continue;
      const found = await this.post(batch, listId);
      for (const [name, answer] of found) answers.set(name, answer);
      if (found.resourcePinned !== undefined) answers.resourcePinned = found.resourcePinned;
    }
    return answers;
  }

  private async post(tools: PinQuery[], listId: string | undefined): Promise<PinAnswers> {
    let response: Response;
    try {
      response = await (this.options.fetch ?? fetch)(this.endpoint, {
        method: 'POST',
        headers: { authorization: this.authorization, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({
          resource: this.options.resource,
          first_use: this.options.firstUse,
          ...(listId ? { list_id: listId } : {}),
          // Only a report (definitions) can create pins: questions need no snapshot.
          ...(this.options.snapshot && tools.some((tool) => tool.definition) ? { snapshot: this.options.snapshot } : {}),
          tools,
        }),
        // A redirect is no answer of the AS's (`manual`, checked below: workerd refuses `redirect: 'error'`).
        redirect: 'manual',
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 5_000),
      });
    } catch (error) {
      const cause = (error as Error).cause as Error | undefined;
      throw new PinsUnavailable(`${this.endpoint}: ${(error as Error).message}${cause?.message ? ` (${cause.message})` : ''}`);
    }
    const json = (await response.json().catch(() => undefined)) as { tools?: unknown; error?: unknown; resource_pinned?: unknown } | undefined;
    // Anything but the AS's own 200 (a refusal of this client, a proxy's page) counts as no answer: fail closed.
    if (response.status !== 200 || !json || !Array.isArray(json.tools)) {
      throw new PinsUnavailable(`${this.endpoint} answered ${response.status}${typeof json?.error === 'string' ? ` ${json.error}` : ''}`);
    }
    const answers: PinAnswers = new Map();
    if (typeof json.resource_pinned === 'boolean') answers.resourcePinned = json.resource_pinned;
    for (const entry of json.tools as unknown[]) {
      const { name, verdict, hash, approved_hash: approvedHash } = (entry ?? {}) as Record<string, unknown>;
      if (typeof name !== 'string' || typeof verdict !== 'string' || !VERDICTS.has(verdict)) continue;
      answers.set(name, { verdict: verdict as PinVerdict, ...(typeof hash === 'string' ? { hash } : {}), ...(typeof approvedHash === 'string' ? { approvedHash } : {}) });
    }
    for (const tool of tools) if (!answers.has(tool.name)) throw new PinsUnavailable(`${this.endpoint} gave no verdict for tool ${tool.name}`);
    return answers;
  }
}
