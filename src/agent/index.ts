// The agent SDK (`mandate/agent`): the client side of every Mandate flow.
export { forTerminal } from './terminal.ts';
export { displayUser, resourceScopes } from './display.ts';
export { MandateAgent, type AgentOptions, type ActiveClient, type CallToolOptions, type StepUpReason, type ToolResult } from './agent.ts';
export { ApprovalRequiredError, URL_ELICITATION_REQUIRED, type ApprovalForm, type ApprovalProgress, type ApprovalRequest, type TransactionStatus } from './approval.ts';
export { authorizationServerMetadata, discover, parseChallenge, resourceCovers, type Discovery } from './discovery.ts';
export { AgentError, AGENT_EXIT_CODES, type AgentErrorKind } from './errors.ts';
export { CredentialStore, defaultStorePath, type IdpSignIn, type IssuerCredentials, type SignedInUser, type StoredTokens } from './store.ts';
export { pkce, startLoopbackSignIn, tokenRequest, clientAssertion, type ClientKey, type TokenEndpointAuthMethod } from './oauth.ts';
export { AgentDpop, type DpopSetting } from './dpop.ts';
export type { AgentMode, EnterpriseOptions, WorkloadIdentitySource } from './options.ts';
export { registerAgent, METHOD_NAMES, type RegisteredClient, type RegistrationMethod, type RegistrationPreference, type RegistrationRequest } from './registration.ts';
