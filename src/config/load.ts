import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import type { z } from 'zod';
import { authServerConfigSchema, type AuthServerConfig } from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses and validates a configuration object; the message lists every problem with its path. */
export function parseConfig<S extends z.ZodType>(schema: S, raw: unknown, source: string): z.output<S> {
  const result = schema.safeParse(raw ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  throw new ConfigError(`invalid configuration in ${source}:\n${problems.join('\n')}`);
}

export async function loadYaml(file: string): Promise<unknown> {
  try {
    return parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`cannot read ${file}: ${(error as Error).message}`);
  }
}

export async function loadAuthServerConfig(file: string): Promise<AuthServerConfig> {
  return parseConfig(authServerConfigSchema, await loadYaml(file), file);
}
