// The authorization server on Node (`mandate/auth-server`): `startAuthServer` opens storage, keys
// and state for a configuration (`mandate/config` loads and validates one) and listens.
export { startAuthServer, type AuthServerHandle } from './server.ts';
