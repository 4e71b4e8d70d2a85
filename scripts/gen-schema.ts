// Writes the JSON Schemas of the configuration files into schema/. A test fails when they are stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { configJsonSchemas } from '../src/config/json-schema.ts';

mkdirSync('schema', { recursive: true });
for (const [file, schema] of Object.entries(configJsonSchemas())) {
  writeFileSync(`schema/${file}`, `${JSON.stringify(schema, null, 2)}\n`);
  console.log(`wrote schema/${file}`);
}
