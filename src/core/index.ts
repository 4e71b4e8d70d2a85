export * from './errors.ts';
export * from './encoding.ts';
export * from './pkce.ts';
export * from './scopes.ts';
export * from './redirect-uri.ts';
export * from './client-metadata.ts';
export * from './jwt.ts';
