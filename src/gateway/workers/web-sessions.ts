/**
 * Web route sessions in the `GatewayState` Durable Object (issue 16): a browser signed in through
 * one isolate is signed in on all of them, and after a restart; a back-channel logout received by
 * any isolate ends the session everywhere; a started sign-in may finish through another isolate.
 *
 * One object per thing, named `web:<kind>:<SHA-256>` — never the secret itself:
 * - `web:session:<H(session id)>`: one session;
 * - `web:pending:<H(state)>`: one authorization request on its way (taken once);
 * - `web:seen:<H(key)>`: a logout token `jti` already used (replay);
 * - `web:sid:<H(route, sid)>` and `web:sub:<H(route, sub)>`: the session hashes of one AS session
 *   or one subject at one route, which back-channel logout looks up (no object lists everything).
 *
 * The records are sealed (AES-256-GCM) with a key derived from the session id or state, which the
 * object never sees (it is named by the hash): what the object's storage holds (tokens, claims,
 * the PKCE verifier) can only be read with the browser's cookie. The `sub`/`sid` a back-channel
 * logout matches stay in clear beside it. Each object deletes itself by alarm at its expiry, and a
 * record read after its expiry is treated as absent.
 *
 * Fail closed: an object that cannot be reached or fails makes the store throw
 * `WebSessionStoreUnavailable`, and the web route answers 503 (audited with the reason).
 */
import { digest } from '../web/seal.ts';
import { sessionMatches, WebSessionStoreUnavailable, type PendingSignIn, type WebSession, type WebSessionStore } from '../web/store.ts';
import type { DurableNamespace, DurableStorage } from './durable-state.ts';

/** What a `web:` object keeps, under the storage key `web`. */
interface WebRecord {
  /** Epoch ms after which the record is absent. */
  until: number;
  /** Sessions and pending sign-ins: the sealed value. */
  sealed?: string;
  /** Sessions: what back-channel logout matches. */
  route?: string;
  sub?: string;
  sid?: string;
  /** A session object ended by a back-channel logout before its record was put (see `save`). */
  ended?: { route: string; match: { sid?: string; sub?: string } };
  /** Index objects: session hash → its own expiry (epoch ms). */
  members?: Record<string, number>;
}

export type WebCommand =
  | { op: 'web-put'; record: Omit<WebRecord, 'until' | 'members'>; until: number }
  | { op: 'web-renew'; record: Omit<WebRecord, 'until' | 'members'>; until: number }
  | { op: 'web-get' }
  | { op: 'web-take' }
  | { op: 'web-delete' }
  | { op: 'web-first-use'; until: number }
  | { op: 'web-index-add'; member: string; until: number }
  | { op: 'web-index-list' }
  | { op: 'web-end-if'; route: string; match: { sid?: string; sub?: string } };

const WEB_OPS = new Set<string>(['web-put', 'web-renew', 'web-get', 'web-take', 'web-delete', 'web-first-use', 'web-index-add', 'web-index-list', 'web-end-if']);

/** How long a logout that found an indexed session not yet stored is remembered (a sign-in's two steps are seconds apart). */
const ENDED_BEFORE_PUT_MS = 5 * 60_000;

/**
 * `GatewayState`'s handler for the `web:` objects' commands: a Response, or undefined when the
 * command is not one of them. The object's input gate makes each read → write atomic.
 */
export async function webStateCommand(storage: DurableStorage, command: unknown): Promise<Response | undefined> {
  const op = (command as { op?: unknown } | null)?.op;
  if (typeof op !== 'string' || !WEB_OPS.has(op)) return undefined;
  const web = command as WebCommand;
  const now = Date.now();
  const stored = await storage.get<WebRecord>('web');
  const live = stored && stored.until > now ? stored : undefined;
  const keep = async (record: WebRecord) => {
    await storage.put('web', record);
    await storage.setAlarm(record.until);
  };
  switch (web.op) {
    case 'web-put': {
      if (!(web.until > now)) return new Response('bad request', { status: 400 });
      // A back-channel logout reached this (indexed, not yet stored) session first: it stays ended.
      const ended = live?.ended;
      if (ended && web.record.route === ended.route && typeof web.record.sub === 'string' && sessionMatches({ sub: web.record.sub, sid: web.record.sid }, ended.match)) return Response.json({ stored: false });
      await keep({ ...web.record, until: web.until });
      return Response.json({ stored: true });
    }
    case 'web-renew':
      // Only a session still there: one ended meanwhile (sign-out, back-channel logout) stays ended.
      if (!live?.sealed) return Response.json({ renewed: false });
      if (!(web.until > now)) return new Response('bad request', { status: 400 });
      await keep({ ...web.record, until: web.until });
      return Response.json({ renewed: true });
    case 'web-get':
      return Response.json({ record: live ?? null });
    case 'web-take':
      if (stored) await storage.deleteAll();
      return Response.json({ record: live ?? null });
    case 'web-delete':
      if (stored) await storage.deleteAll();
      return Response.json({});
    case 'web-first-use':
      if (live) return Response.json({ first: false });
      if (!(web.until > now)) return new Response('bad request', { status: 400 });
      await keep({ until: web.until });
      return Response.json({ first: true });
    case 'web-index-add': {
      if (typeof web.member !== 'string' || !(web.until > now)) return new Response('bad request', { status: 400 });
      const members = Object.fromEntries(Object.entries(live?.members ?? {}).filter(([, until]) => until > now));
      members[web.member] = Math.max(members[web.member] ?? 0, web.until);
      await keep({ until: Math.max(...Object.values(members)), members });
      return Response.json({});
    }
    case 'web-index-list':
      return Response.json({ members: Object.entries(live?.members ?? {}).filter(([, until]) => until > now).map(([member]) => member) });
    case 'web-end-if': {
      const ended = !!live?.route && live.route === web.route && typeof live.sub === 'string' && sessionMatches({ sub: live.sub, sid: live.sid }, web.match ?? {});
      if (ended) await storage.deleteAll();
      // Indexed but not stored yet (a sign-in between its two steps): remembered, so that its put is refused.
      else if (!live?.sealed) await keep({ until: now + ENDED_BEFORE_PUT_MS, ended: { route: web.route, match: web.match ?? {} } });
      return Response.json({ ended });
    }
  }
}

/** When the `web:` record of an object ends (0 when it has none), for `GatewayState`'s alarm. */
export async function webRecordUntil(storage: DurableStorage): Promise<number> {
  return (await storage.get<WebRecord>('web'))?.until ?? 0;
}

const encoder = new TextEncoder();

function toBase64url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64url(text: string): Uint8Array {
  return Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
}

/** AES-256-GCM key derived (HKDF-SHA256) from the secret a record is found by (session id, state). */
async function recordKey(secret: string, purpose: string): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey('raw', encoder.encode(secret), 'HKDF', false, ['deriveKey']);
  return crypto.subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt: encoder.encode('mandate gateway web record v1'), info: encoder.encode(purpose) }, base, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

async function sealRecord(secret: string, purpose: string, value: unknown): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const body = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: encoder.encode(purpose) }, await recordKey(secret, purpose), encoder.encode(JSON.stringify(value)));
  return `${toBase64url(iv)}.${toBase64url(new Uint8Array(body))}`;
}

async function unsealRecord<T>(secret: string, purpose: string, sealed: string): Promise<T> {
  const [iv, body] = sealed.split('.');
  const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: fromBase64url(iv ?? '') as BufferSource, additionalData: encoder.encode(purpose) }, await recordKey(secret, purpose), fromBase64url(body ?? '') as BufferSource);
  return JSON.parse(new TextDecoder().decode(plain)) as T;
}

/** A `WebSessionStore` on the `GatewayState` Durable Object namespace (see the top of this file). */
export class DurableWebSessions implements WebSessionStore {
  constructor(private readonly namespace: DurableNamespace) {}

  private async send(name: string, command: WebCommand): Promise<Record<string, unknown>> {
    try {
      const stub = this.namespace.get(this.namespace.idFromName(name));
      // The host part is never resolved: a Durable Object stub's fetch goes to the object.
      const response = await stub.fetch('https://gateway-state/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(command) });
      if (response.status !== 200) throw new Error(`the Durable Object answered ${response.status}`);
      return (await response.json()) as Record<string, unknown>;
    } catch (error) {
      throw new WebSessionStoreUnavailable(error);
    }
  }

  private async index(route: string, kind: 'sid' | 'sub', value: string): Promise<string> {
    return `web:${kind}:${await digest(`${route}\n${value}`)}`;
  }

  async save(id: string, session: WebSession, ttlSeconds: number): Promise<void> {
    const hash = await digest(id);
    const now = Date.now();
    const until = now + ttlSeconds * 1000;
    // The indexes outlive the record's idle lifetime: a session renewed later is still found.
    const indexUntil = Math.max(until, session.expiresAt * 1000);
    const sealed = await sealRecord(id, 'session', session);
    // Indexed first, so that a back-channel logout cannot miss it: one that lists the index before
    // the put finds the hash, and its end-if on the not-yet-stored session leaves a mark that makes
    // the put below refused (the cookie set after it then opens nothing: sign in again).
    const indexes = [await this.index(session.route, 'sub', session.sub)];
    if (session.sid !== undefined) indexes.push(await this.index(session.route, 'sid', session.sid));
    await Promise.all(indexes.map((name) => this.send(name, { op: 'web-index-add', member: hash, until: indexUntil })));
    await this.send(`web:session:${hash}`, { op: 'web-put', record: { sealed, route: session.route, sub: session.sub, sid: session.sid }, until });
  }

  async renew(id: string, session: WebSession, ttlSeconds: number): Promise<boolean> {
    const sealed = await sealRecord(id, 'session', session);
    const { renewed } = await this.send(`web:session:${await digest(id)}`, { op: 'web-renew', record: { sealed, route: session.route, sub: session.sub, sid: session.sid }, until: Date.now() + ttlSeconds * 1000 });
    return renewed === true;
  }

  async get(id: string): Promise<WebSession | undefined> {
    const { record } = (await this.send(`web:session:${await digest(id)}`, { op: 'web-get' })) as { record: WebRecord | null };
    if (!record?.sealed) return undefined;
    try {
      return await unsealRecord<WebSession>(id, 'session', record.sealed);
    } catch {
      return undefined;
    }
  }

  async delete(id: string): Promise<void> {
    await this.send(`web:session:${await digest(id)}`, { op: 'web-delete' });
  }

  async endMatching(route: string, match: { sid?: string; sub?: string }): Promise<number> {
    const index = match.sid !== undefined ? await this.index(route, 'sid', match.sid) : match.sub !== undefined ? await this.index(route, 'sub', match.sub) : undefined;
    if (!index) return 0;
    const { members } = (await this.send(index, { op: 'web-index-list' })) as { members: string[] };
    const ended = await Promise.all(members.map((hash) => this.send(`web:session:${hash}`, { op: 'web-end-if', route, match })));
    return ended.filter((result) => result.ended === true).length;
  }

  async putPending(state: string, pending: PendingSignIn, ttlSeconds: number): Promise<void> {
    const sealed = await sealRecord(state, 'pending', pending);
    await this.send(`web:pending:${await digest(state)}`, { op: 'web-put', record: { sealed }, until: Date.now() + ttlSeconds * 1000 });
  }

  async takePending(state: string): Promise<PendingSignIn | undefined> {
    const { record } = (await this.send(`web:pending:${await digest(state)}`, { op: 'web-take' })) as { record: WebRecord | null };
    if (!record?.sealed) return undefined;
    try {
      return await unsealRecord<PendingSignIn>(state, 'pending', record.sealed);
    } catch {
      return undefined;
    }
  }

  async firstUse(key: string, ttlSeconds: number): Promise<boolean> {
    const { first } = (await this.send(`web:seen:${await digest(key)}`, { op: 'web-first-use', until: Date.now() + ttlSeconds * 1000 })) as { first: boolean };
    return first === true;
  }
}
