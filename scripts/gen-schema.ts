// Writes the JSON Schemas of the configuration files into schema/, and the configuration
// reference into docs/configuration.md. A test fails when either is stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { configDocs, configJsonSchemas } from '../src/config/json-schema.ts';

mkdirSync('schema', { recursive: true });
for (const [file, schema] of Object.entries(configJsonSchemas())) {
  writeFileSync(`schema/${file}`, `${JSON.stringify(schema, null, 2)}\n`);
  console.log(`wrote schema/${file}`);
}
writeFileSync('docs/configuration.md', configDocs());
console.log('wrote docs/configuration.md');
