import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { ApprovalProgress, ApprovalRequest } from './approval.ts';
import type { ClientCredentials, ClientKey, TokenEndpointAuthMethod } from './oauth.ts';
import type { RegisteredClient, RegistrationMethod, RegistrationPreference } from './registration.ts';
import type { CredentialStore } from './store.ts';
import type { DpopSetting } from './dpop.ts';

export interface AgentOptions {
  /** The MCP endpoint the agent works with (the gateway's route, or a self-protected server). */
  mcpUrl: string;
  /**
   * The agent's pre-registered client id. Without one the agent registers itself (see `register`)
   * and keeps that registration in the credentials file for later runs.
   */
  clientId?: string;
  /** Its secret (the CLI reads AGENT_SECRET). */
  clientSecret?: string;
  /** Its private key, for `private_key_jwt` (RFC 7523 §2.2): assertions with `iss` = `sub` = the client id, `aud` = the AS issuer. */
  clientKey?: ClientKey;
  /**
   * How the pre-registered client authenticates at the token endpoint. Default: `private_key_jwt`
   * with a `clientKey`, `client_secret_basic` with a secret (`client_secret_post` when the AS
   * lists only that), else `none`. A registration made by the SDK uses what the AS answered.
   */
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  /**
   * Enterprise-managed authorization (MCP EMA, ID-JAG): the person's ID token from the enterprise
   * IdP is exchanged there for an ID-JAG (RFC 8693, `requested_token_type` id-jag, `audience` = the
   * MCP AS issuer, `resource` = the MCP resource), which the agent presents to the MCP AS with the
   * jwt-bearer grant (RFC 7523 §2.1), authenticated as its own client there. Used with `mode: 'enterprise'`.
   */
  enterprise?: EnterpriseOptions;
  /**
   * `mode: 'workload'`: the platform's JWT. Without `clientId`, the SEP-1933 grant (jwt-bearer,
   * `assertion` = the JWT, no client authentication); with `clientId`, client credentials
   * authenticated by the JWT (`workload_identity`, a Mandate extension). A refusal is not retried,
   * and no other grant is tried.
   */
  workloadIdentity?: WorkloadIdentitySource;
  /**
   * DPoP (RFC 9449): `auto` (default) when the AS lists ES256 in `dpop_signing_alg_values_supported`,
   * `always` (an AS answering `Bearer` is refused), `never`. The proof key (ES256) is made per
   * registration and kept in the credentials file; every token request and every MCP request with
   * a DPoP-bound token carries a proof; a server nonce is taken and the request retried once.
   */
  dpop?: DpopSetting;
  /**
   * How to register without a client id: `auto` (default) follows the MCP spec's order — a client
   * ID metadata document (with `clientMetadataUrl`, when the AS accepts them), dynamic client
   * registration, agent registration; or one method only.
   */
  register?: RegistrationPreference;
  /** The `https` URL where the agent publishes its client ID metadata document. */
  clientMetadataUrl?: string;
  /** The name a registration shows to the person and administrators (default "Mandate agent"). */
  clientName?: string;
  /**
   * `delegated`: the person signs in to the agent's own resource and the agent exchanges that token
   * (with its own as actor) for the MCP server's, which carries `act`. `direct`: the person signs in
   * for the MCP server itself. Default: delegated when the agent has a secret (it can be an actor),
   * direct for a public client. `client`: no person — the agent's own token for the MCP server
   * (client credentials, RFC 6749 §4.4). `enterprise`: the person's enterprise sign-in, through an
   * ID-JAG (see `enterprise`); no browser at the MCP AS. `workload`: the workload's platform
   * identity (see `workloadIdentity`).
   */
  mode?: AgentMode;
  /** Told when the agent registered itself. */
  onRegistered?: (client: RegisteredClient, issuer: string) => void | Promise<void>;
  /**
   * The agent's own resource at the AS: the audience of the user's sign-in through the agent, whose
   * `may_act` names the agent (seed 001's "agent" audience). Default http://localhost:3000.
   */
  agentResource?: string;
  /** Port of the loopback redirect URI (default 3000, as registered for the sample agent; 0 = any free port). */
  callbackPort?: number;
  store?: CredentialStore;
  /** Shows the authorization URL to the person (print it, open a browser). */
  onAuthorizationUrl?: (url: string) => void | Promise<void>;
  /** Shows the device grant's verification URL and user code (RFC 8628 §3.3). */
  onDeviceCode?: (verification: { verificationUri: string; verificationUriComplete?: string; userCode: string; expiresIn: number }) => void | Promise<void>;
  /** Step-up re-authorizations allowed per call (default 1). */
  maxStepUps?: number;
  /**
   * Told before a step-up sign-in, with why it is needed: the tool called (when the request was a
   * `tools/call`), the scopes the MCP server's challenge names and those the person has not granted.
   */
  onStepUp?: (why: StepUpReason) => void | Promise<void>;
  /**
   * Told when a call needs the person's approval first (issue 14): show them `request.url` (or send
   * them to `request.approvalsPage`). The agent then polls the AS until the approval is given,
   * denied or lapses, and on approval makes the same call once more. Answer `false` not to wait:
   * the call then fails with an `ApprovalRequiredError` carrying the request. Without this handler
   * (here or per call) nobody would see the link, so the call fails that way at once.
   */
  onApproval?: (request: ApprovalRequest) => void | boolean | Promise<void | boolean>;
  /** Told at every poll while the agent waits for an approval (for a progress line). */
  onApprovalProgress?: (progress: ApprovalProgress) => void;
  /** How often the agent asks the AS whether an approval was given, in ms (default 2000). */
  approvalPollIntervalMs?: number;
}

export type AgentMode = 'delegated' | 'direct' | 'client' | 'enterprise' | 'workload';

/** The workload's platform JWT (Kubernetes service account token, SPIFFE JWT-SVID…), read fresh for each request. */
export type WorkloadIdentitySource = { token: () => Promise<string> } | { tokenFile: string };

export interface EnterpriseOptions {
  /** The IdP's issuer (its token endpoint is discovered when `idpTokenEndpoint` is not given). */
  idpIssuer?: string;
  idpTokenEndpoint?: string;
  /** The agent's client at the IdP. */
  idpClientId: string;
  idpClientSecret?: string;
  /**
   * The person's ID token from the IdP (OIDC), or a function that gives a fresh one. Without it,
   * the sign-in kept for `idpIssuer` (made by `login()` / `loginWithDevice()` in enterprise mode,
   * `mandate agent login --idp`), renewed with its refresh token when it expires.
   */
  idToken?: string | (() => Promise<string>);
}

/** A tool call's result, as the MCP SDK client returns it. */
export type ToolResult = Awaited<ReturnType<Client['callTool']>>;

/** Per call: the MCP client to use (else the agent connects, and closes after), and the approval handlers. */
export interface CallToolOptions {
  client?: Client;
  onApproval?: AgentOptions['onApproval'];
  onApprovalProgress?: AgentOptions['onApprovalProgress'];
  /** Stops waiting for an approval (the call fails with a `cancelled` AgentError). */
  signal?: AbortSignal;
}

export type CallParams = { name: string; arguments: Record<string, unknown> } & Record<string, unknown>;

/** Why the agent asks the person to sign in again. */
export interface StepUpReason {
  tool?: string;
  /** What the MCP server's challenge asks for. */
  scopes: string[];
  /** Of those, the ones the current sign-in lacks. */
  missing: string[];
}

/** The client the agent acts as, and how it came by it. */
export interface ActiveClient extends ClientCredentials {
  method: RegistrationMethod;
}

