// The authorization server on Node (`mandate/auth-server`): `startAuthServer` opens storage, keys
// and state for a configuration (`mandate/config` loads and validates one) and listens.
export { startAuthServer, type AuthServerHandle } from './server.ts';
export { builtInRiskEvaluator, type RiskAssessment, type RiskContext, type RiskEvaluator, type RiskLevel, type RiskSignals } from './remember/index.ts';
