/**
 * Build step: compiles the manifest schema once into standalone validation code
 * (ajv's standalone mode), so a launch neither imports ajv nor compiles the schema
 * (about 80 ms of start-up). Run by `npm run build`; parse.ts falls back to compiling
 * at run time when the generated file is absent (tests run from source).
 */
import { Ajv } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { writeFileSync } from 'node:fs';
import { manifestSchema } from '../manifest/schema.js';

export function validatorSource(): string {
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, code: { source: true, esm: true } });
  return standaloneCode.default(ajv, ajv.compile(manifestSchema));
}

if (process.argv[2]) {
  writeFileSync(
    process.argv[2],
    `// Generated from src/manifest/schema.ts by build-validator; do not edit.\nimport { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);\n${validatorSource()}`,
  );
}
