import type { Client } from '../core/client-metadata.ts';
import type { ToolPinStore } from './pin-store.ts';

/**
 * Narrow storage interfaces (STYLE.md §10). Secrets (client secrets, registration access tokens,
 * codes, refresh tokens) are stored only as SHA-256 hashes; the raw values never reach the store.
 * Times are epoch seconds.
 */

export interface AgentAttributes {
  agentType: string;
  /** Username of the person responsible for the agent. */
  owner?: string;
  /** Epoch seconds after which the agent is refused. */
  expiresAt?: number;
}

/**
 * A client's platform identity (issue 17, SEP-1933): the (`iss`, `sub`) of the workload JWTs
 * that authenticate it, and extra claims they must carry exactly. One client per (issuer, subject).
 */
export interface WorkloadIdentityRecord {
  issuer: string;
  subject: string;
  claims?: Record<string, string | number | boolean>;
}

export interface ClientRecord extends Client {
  registrationTokenHash?: string;
  lastUsedAt?: number;
  /** Set for AI agents: first-class identities with their own lifecycle. */
  agent?: AgentAttributes;
  /** When an administrator disabled it; a disabled client gets nothing and its tokens stop. */
  disabledAt?: number;
  /** Tokens of this client (or naming it as an actor) issued before this time are dead, even after re-enabling. */
  tokensValidAfter?: number;
  /** Hash of the registrant and metadata, so an identical registration returns the same client. */
  fingerprint?: string;
  /**
   * Set only from the configuration file or the admin API, never from client metadata (a
   * self-registered client must not claim a platform identity). Stored in `workload_identities`.
   */
  workloadIdentity?: WorkloadIdentityRecord;
}

export type ClientPatch = Partial<
  Pick<ClientRecord, 'metadata' | 'secretHash' | 'registrationTokenHash' | 'fingerprint' | 'agent' | 'disabledAt' | 'tokensValidAfter' | 'workloadIdentity'>
>;

export interface ClientRestriction {
  clientId: string;
  disabledAt?: number;
  tokensValidAfter?: number;
  /** Agents only: when the agent expires. */
  expiresAt?: number;
}

export interface ClientStore {
  find(clientId: string): Promise<ClientRecord | undefined>;
  /** Inserts or replaces the client. */
  upsert(client: ClientRecord): Promise<void>;
  delete(clientId: string): Promise<boolean>;
  /** Records the client's first use (a later call leaves it as it is). */
  touch(clientId: string, at: number): Promise<void>;
  list(): Promise<ClientRecord[]>;
  /**
   * Changes only the given fields, never the others (a record read earlier must not overwrite a
   * concurrent change, such as a disable). With `onlyIfEnabled`, a disabled client is left alone.
   * False when nothing was updated.
   */
  update(clientId: string, patch: ClientPatch, options?: { onlyIfEnabled?: boolean }): Promise<boolean>;
  findByFingerprint(fingerprint: string): Promise<ClientRecord | undefined>;
  countDynamic(): Promise<number>;
  /** Deletes dynamic clients never used and created before `before`; returns how many. */
  deleteUnused(before: number): Promise<number>;
  /** Clients that are disabled now, whose earlier tokens were cut off, or agents (which may expire). */
  listRestricted(): Promise<ClientRestriction[]>;
  /**
   * The client whose workload identity is (issuer, subject), if any. `upsert` and `update` write
   * that identity in the same transaction as the client; one already held by another client makes
   * them throw `WorkloadIdentityTaken` (nothing written).
   */
  findByWorkload(issuer: string, subject: string): Promise<ClientRecord | undefined>;
}

/** Thrown by `ClientStore.upsert`/`update` when another client holds the workload identity. */
export class WorkloadIdentityTaken extends Error {
  readonly issuer: string;
  readonly subject: string;
  readonly heldBy: string;
  constructor(issuer: string, subject: string, heldBy: string) {
    super(`workload identity ${subject} of ${issuer} belongs to client ${heldBy}`);
    this.name = 'WorkloadIdentityTaken';
    this.issuer = issuer;
    this.subject = subject;
    this.heldBy = heldBy;
  }
}

export interface UserRecord {
  sub: string;
  username: string;
  passwordHash?: string;
  profile: { name?: string; email?: string };
  createdAt: number;
  /** Admin roles (admin scopes, src/admin/scopes.ts); none for an ordinary user. */
  roles?: string[];
  /**
   * `config` for users of the configuration file (re-written on every start), `admin` for users
   * created through the admin API, `federated` for users created on first sign-in through another
   * issuer (an ID-JAG with `jit_users`).
   */
  source?: 'config' | 'admin' | 'federated';
}

export interface UserStore {
  findByUsername(username: string): Promise<UserRecord | undefined>;
  findBySub(sub: string): Promise<UserRecord | undefined>;
  upsert(user: UserRecord): Promise<void>;
  /**
   * Users whose profile email equals `email`, compared lower-cased (`upsert` keeps the lower-cased
   * copy). All matches, ordered by sub: a caller linking an account requires exactly one.
   */
  findByEmail(email: string): Promise<UserRecord[]>;
  /** Every user, ordered by username. */
  list(): Promise<UserRecord[]>;
  /** Deletes the user with its second factor, remembered devices and federated identity links. */
  delete(sub: string): Promise<boolean>;
}

/** An identity of another issuer (a trusted IdP's `iss` and `sub`) linked to a local user. */
export interface FederatedIdentityRecord {
  issuer: string;
  subject: string;
  /** The local user's `sub`. */
  sub: string;
  createdAt: number;
  lastUsedAt?: number;
}

export interface FederationStore {
  findLink(issuer: string, subject: string): Promise<FederatedIdentityRecord | undefined>;
  /**
   * Records the link unless (issuer, subject) is linked already: true when this call wrote it.
   * Of two concurrent first uses exactly one writes; the other reads the link back.
   */
  link(record: FederatedIdentityRecord): Promise<boolean>;
  /** Records a use of the link. */
  touch(issuer: string, subject: string, at: number): Promise<void>;
  /** The issuers the local user is linked from, sorted. */
  issuersOf(sub: string): Promise<string[]>;
  /** Removes every link to the local user; returns how many. */
  unlinkBySub(sub: string): Promise<number>;
}

/** What a user (or a client acting for itself) granted one client for one resource. */
export interface GrantRecord {
  id: string;
  sub: string;
  clientId: string;
  resource: string;
  scope: string;
  authTime?: number;
  acr?: string;
  sid?: string;
  nonce?: string;
  createdAt: number;
  expiresAt: number;
  revokedAt?: number;
}

export interface AuthorizationCodeRecord {
  codeHash: string;
  grantId: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scope: string;
  resource: string;
  expiresAt: number;
  consumedAt?: number;
  /** RFC 9449 §10: the JWK thumbprint the code is bound to (`dpop_jkt` at /authorize or /par). */
  dpopJkt?: string;
}

export interface RefreshTokenRecord {
  tokenHash: string;
  grantId: string;
  clientId: string;
  scope: string;
  createdAt: number;
  expiresAt: number;
  rotatedAt?: number;
  revokedAt?: number;
  /**
   * RFC 9449 §5: the JWK thumbprint a public client's refresh token is bound to. Rotation keeps it:
   * a replacement written without one inherits its predecessor's.
   */
  dpopJkt?: string;
}

export interface AccessTokenRecord {
  jti: string;
  grantId?: string;
  clientId: string;
  expiresAt: number;
  revokedAt?: number;
  /** Opaque tokens only: the token's hash and its claims, which introspection returns. */
  tokenHash?: string;
  claims?: Record<string, unknown>;
}

/** The records of tokens issued by a code redemption or a refresh, written with it. */
export interface IssuedTokens {
  accessToken?: AccessTokenRecord;
  refreshToken?: RefreshTokenRecord;
}

export interface GrantStore {
  createGrant(grant: GrantRecord): Promise<void>;
  findGrant(id: string): Promise<GrantRecord | undefined>;
  /** Revokes the grant, its refresh tokens and every access token recorded for it. */
  revokeGrant(id: string, at: number): Promise<void>;

  createCode(code: AuthorizationCodeRecord): Promise<void>;
  findCode(codeHash: string): Promise<AuthorizationCodeRecord | undefined>;
  /**
   * One transaction: marks the code consumed and writes the tokens issued for it, so no code is
   * spent without its tokens stored, nor tokens stored for a code another request spent.
   * `replayed`: it was consumed before (nothing written); `revoked`: its grant is revoked.
   */
  redeemCode(codeHash: string, at: number, options: { grantId: string; issued: IssuedTokens }): Promise<'redeemed' | 'replayed' | 'revoked'>;
  /**
   * Marks the code consumed and returns it. `firstUse` is false when it had been consumed before
   * (a replay): the caller then revokes the grant (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3).
   */
  consumeCode(codeHash: string, at: number): Promise<{ code: AuthorizationCodeRecord; firstUse: boolean } | undefined>;

  createRefreshToken(token: RefreshTokenRecord): Promise<void>;
  findRefreshToken(tokenHash: string): Promise<RefreshTokenRecord | undefined>;
  /**
   * One transaction: marks the token rotated and writes the tokens that replace it, so a failure at
   * any point leaves either the old token usable or the new one stored, never neither.
   * `reused`: it had been rotated at or after `reuseSince` (concurrent refreshes; the new tokens are
   * written); `replayed`: rotated before that (nothing written; the caller revokes the grant);
   * `revoked`: the token or its grant is revoked (nothing written).
   */
  rotateRefreshToken(
    tokenHash: string,
    at: number,
    options: { grantId: string; reuseSince: number; issued: IssuedTokens },
  ): Promise<'rotated' | 'reused' | 'replayed' | 'revoked'>;

  /** Records an access token bound to a grant, so that revoking the grant reaches it. */
  recordAccessToken(token: AccessTokenRecord): Promise<void>;
  /** Records many at once; a `jti` already there (revoked meanwhile) is left as it is. */
  recordAccessTokens(tokens: AccessTokenRecord[]): Promise<void>;
  findAccessToken(jti: string): Promise<AccessTokenRecord | undefined>;
  /** Revokes one access token by `jti`, recording it if it was not tracked. */
  revokeAccessToken(token: AccessTokenRecord, at: number): Promise<void>;
  findAccessTokenByHash(tokenHash: string): Promise<AccessTokenRecord | undefined>;
  /** Revokes every grant and tracked token of a client (an agent being disabled). */
  revokeByClient(clientId: string, at: number): Promise<void>;
  /** Revoked access tokens that have not expired yet, revoked at or after `since`: the revocation list. */
  listRevokedAccessTokens(now: number, since?: number): Promise<{ jti: string; expiresAt: number; revokedAt: number }[]>;
  /** The grants of one user, newest first (revoked and expired ones included, until the sweep removes them). */
  listGrantsBySub(sub: string): Promise<GrantRecord[]>;
  /** Grants revoked at or after `since` (their tokens carry `grant_id`): the revocation list. */
  listRevokedGrants(since: number): Promise<{ id: string; revokedAt: number }[]>;
}

/** A resource definition as configured (validated by the config schema), with where it came from. */
export interface ResourceRecord {
  id: string;
  definition: Record<string, unknown>;
  source: 'config' | 'admin';
  updatedAt: number;
}

export interface ResourceStore {
  list(): Promise<ResourceRecord[]>;
  upsert(resource: ResourceRecord): Promise<void>;
  delete(id: string): Promise<boolean>;
}

/** An agreement or authentication policy added through the admin API (those of the file are not stored). */
export interface SettingRecord {
  kind: 'agreement' | 'authentication_policy';
  /** The agreement's id or the policy's name. */
  id: string;
  definition: Record<string, unknown>;
  updatedAt: number;
}

export interface SettingStore {
  list(kind: SettingRecord['kind']): Promise<SettingRecord[]>;
  upsert(setting: SettingRecord): Promise<void>;
  delete(kind: SettingRecord['kind'], id: string): Promise<boolean>;
}

export interface AgreementAcceptance {
  sub: string;
  agreementId: string;
  version: number;
  acceptedAt: number;
}

export interface AgreementStore {
  find(sub: string, agreementId: string): Promise<AgreementAcceptance | undefined>;
  accept(acceptance: AgreementAcceptance): Promise<void>;
}

export interface ConsentRecord {
  sub: string;
  clientId: string;
  resource: string;
  scope: string;
  /**
   * The high-risk scopes the user ticked on the consent page (space-separated): an unverified
   * client keeps a high-risk scope silently only while it is in here. A row written before ticks
   * were recorded has none: nothing ticked.
   */
  highRiskTicked?: string;
  createdAt: number;
}

export interface ConsentStore {
  find(sub: string, clientId: string, resource: string): Promise<ConsentRecord | undefined>;
  upsert(consent: ConsentRecord): Promise<void>;
  listBySub(sub: string): Promise<ConsentRecord[]>;
  delete(sub: string, clientId: string, resource: string): Promise<boolean>;
}

/**
 * A high-risk action waiting for its user's approval (docs/high-risk-actions.md): one tool call,
 * bound to the user, the client and agent chain of the caller's token, and the hash of the bound
 * arguments. Stored states only; `expired` is read from `expiresAt` (see `transactionStatus`).
 */
export interface TransactionRecord {
  /** Random, 128 bits, base64url: the public id in the approval URL. */
  id: string;
  status: 'pending' | 'approved' | 'denied' | 'used';
  sub: string;
  /** The client of the caller's token. */
  clientId: string;
  /** The `act` chain of the caller's token, as subjects, most recent first. */
  act: string[];
  /** The audience of the caller's token. */
  resource: string;
  tool: string;
  argumentsHash: string;
  summary: string;
  /** The bound arguments, shown on the approval page. */
  details?: Record<string, unknown>;
  /** The client that asked for the approval (a gateway). */
  requestedBy: string;
  createdAt: number;
  expiresAt: number;
  decidedAt?: number;
  decidedHow?: 'password' | 'totp';
  usedAt?: number;
}

export type TransactionStatus = TransactionRecord['status'] | 'expired';

/** What a transaction is at `now`: pending and approved ones expire. */
export function transactionStatus(tx: Pick<TransactionRecord, 'status' | 'expiresAt'>, now: number): TransactionStatus {
  return (tx.status === 'pending' || tx.status === 'approved') && tx.expiresAt <= now ? 'expired' : tx.status;
}

export interface TransactionStore {
  create(tx: TransactionRecord): Promise<void>;
  find(id: string): Promise<TransactionRecord | undefined>;
  /**
   * One conditional update: pending → approved or denied, only for `sub`, only before it expires.
   * False when it was not pending (decided meanwhile), not this user's, or expired.
   */
  decide(id: string, sub: string, decision: { status: 'approved' | 'denied'; at: number; how?: TransactionRecord['decidedHow'] }): Promise<boolean>;
  /**
   * One conditional update: approved → used, only with this binding, only before it expires. Of
   * two concurrent uses exactly one gets true.
   */
  use(id: string, binding: { sub: string; clientId: string; argumentsHash: string }, at: number): Promise<boolean>;
  /** The user's pending transactions not yet expired, newest first. */
  listPending(sub: string, now: number): Promise<TransactionRecord[]>;
  /**
   * Transactions newest first (created_at, then id, descending), narrowed by each filter given:
   * `status` as `transactionStatus` reads it at `now` (so `expired` finds pending and approved
   * ones past their expiry), `since` inclusive and `until` exclusive on `createdAt`, `after` the
   * last item of the previous page. At most `limit`.
   */
  list(filter: TransactionFilter): Promise<TransactionRecord[]>;
}

export interface TransactionFilter {
  now: number;
  limit: number;
  sub?: string;
  status?: TransactionStatus;
  tool?: string;
  since?: number;
  until?: number;
  after?: { createdAt: number; id: string };
}

/**
 * A user's TOTP credential (RFC 6238). `secret` is sealed by the authorization server (AES-256-GCM,
 * src/auth-server/totp-seal.ts): the store never sees it in clear. Pending until `confirmedAt`.
 */
export interface TotpRecord {
  sub: string;
  secret: string;
  createdAt: number;
  confirmedAt?: number;
  /** The last time step (RFC 6238 §4.2: floor(unix time / 30)) whose code was accepted. */
  lastStep?: number;
}

export interface TotpStore {
  find(sub: string): Promise<TotpRecord | undefined>;
  /** Stores a pending credential, replacing a pending one; false (nothing written) when one is confirmed. */
  putPending(record: { sub: string; secret: string; createdAt: number }): Promise<boolean>;
  /** Confirms the pending credential holding exactly `secret`, recording `step` as used; false when it changed meanwhile. */
  confirm(sub: string, secret: string, step: number, at: number): Promise<boolean>;
  /**
   * Records `step` as used, atomically, only if it is later than the last one used (RFC 6238 §5.2:
   * a code is accepted once): false for a replay, or when no credential is confirmed.
   */
  useStep(sub: string, step: number): Promise<boolean>;
  delete(sub: string): Promise<boolean>;
  /** Which of these users have a confirmed credential. */
  confirmedAmong(subs: string[]): Promise<Set<string>>;
}

/**
 * A remembered sign-in ("Keep me signed in", docs/browser-sessions.md): one browser of one user.
 * The cookie holds `<id>.<token>`; only the token's hash is kept (and the previous one, to tell a
 * replayed rotated value from a typo), with the device cookie's hash the record is bound to.
 */
export interface RememberedRecord {
  id: string;
  sub: string;
  tokenHash: string;
  previousHash?: string;
  rotatedAt?: number;
  deviceHash: string;
  /** The password sign-in's time and methods: a silent sign-in keeps them (so max_age still asks the password). */
  authTime: number;
  amr: string[];
  /** The context of the last trusted use: what the next use is compared with. */
  addressPrefix?: string;
  userAgent?: string;
  country?: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
}

export interface RememberedStore {
  create(record: RememberedRecord): Promise<void>;
  find(id: string): Promise<RememberedRecord | undefined>;
  /**
   * One conditional update: replaces the token only if it is still `expectedHash` (of two
   * concurrent uses exactly one rotates), keeping the old hash as `previousHash`.
   */
  rotate(id: string, expectedHash: string, next: { tokenHash: string; at: number; addressPrefix?: string; userAgent?: string; country?: string }): Promise<boolean>;
  /** The user's records not yet expired, most recently used first. */
  listBySub(sub: string, now: number): Promise<RememberedRecord[]>;
  /** Deletes one record (of this user, when `sub` is given); false when there was none. */
  delete(id: string, sub?: string): Promise<boolean>;
  /** Deletes every record of the user; returns how many. */
  deleteBySub(sub: string): Promise<number>;
}

export interface AuditEvent {
  at: number;
  /** What happened: `token.issued`, `token.refused`, `client.auth_failed`, `authorize.refused`, … */
  type: string;
  outcome: 'success' | 'failure';
  clientId?: string;
  sub?: string;
  /** The OAuth error code sent to the client, if any. */
  error?: string;
  /** The detailed reason, which the client never sees. */
  reason?: string;
  data?: Record<string, unknown>;
}

/** A query of the audit log (the admin API's); every field narrows it. Newest first. */
export interface AuditQuery {
  /** An exact type, or a prefix ending in `*` (`token.*`). */
  type?: string;
  outcome?: AuditEvent['outcome'];
  clientId?: string;
  sub?: string;
  /** Events whose JSON data contains each of these fragments exactly (e.g. `"tool":"transfer"`). */
  dataContains?: string[];
  /** Events of this client, or whose data names it anywhere (an agent in a delegation chain). */
  involves?: string;
  /** Epoch seconds, inclusive. */
  since?: number;
  /** Epoch seconds, exclusive. */
  until?: number;
  /** Only events with a smaller id (the cursor of the previous page). */
  beforeId?: number;
  limit: number;
}

/** Events per UTC day (`day` is epoch days) and kind, for the usage report. */
export interface AuditDailyCount {
  day: number;
  kind: 'issued' | 'exchange' | 'refusal';
  count: number;
}

export interface AuditStore {
  append(events: AuditEvent[]): Promise<void>;
  list(filter?: { type?: string; clientId?: string; limit?: number }): Promise<(AuditEvent & { id: number })[]>;
  query(query: AuditQuery): Promise<(AuditEvent & { id: number })[]>;
  /** Tokens issued (exchanges apart) and refusals per day, between `since` and `until`. */
  dailyCounts(since: number, until: number): Promise<AuditDailyCount[]>;
}

export interface Store {
  clients: ClientStore;
  users: UserStore;
  grants: GrantStore;
  consents: ConsentStore;
  agreements: AgreementStore;
  resources: ResourceStore;
  settings: SettingStore;
  transactions: TransactionStore;
  /** Tool pins (issue 18): what gateways report tools/list answers against. */
  toolPins: ToolPinStore;
  totp: TotpStore;
  remembered: RememberedStore;
  federation: FederationStore;
  audit: AuditStore;
  /** Deletes expired codes, tokens and grants. */
  sweep(now: number): Promise<void>;
  close(): Promise<void>;
}

/** Short-lived state (interactions, sessions, replay caches): in memory by default, Redis later. */
export interface TtlCache {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown, ttlSeconds: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Sets the key only if absent; false if it existed (replay detection). */
  add(key: string, value: unknown, ttlSeconds: number): Promise<boolean>;
  /**
   * Compare-and-set, atomic across instances: replaces the value with `next` (or deletes it when
   * `next` is undefined) only if it still equals `expected` (as JSON). False when another writer
   * changed or removed it in between, so a read-modify-write never overwrites a newer state.
   */
  swap(key: string, expected: unknown, next: unknown, ttlSeconds: number): Promise<boolean>;
}
