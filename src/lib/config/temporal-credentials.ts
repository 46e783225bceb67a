// What every connection to Temporal presents (clients, workers, the intake, the Slack bot):
// TLS, a client certificate for mTLS, an API key, from temporal.tls and temporal.apiKeyEnv.
// Read at each connect, so a renewed certificate or a rotated key is used by the next connection
// (a region worker renews its connection when the namespace moves) without a restart.
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import type { Config } from './schema';

/** A credential the config names that this process cannot present: bad input, nothing connected. */
export class CredentialsError extends Error {
  override name = 'CredentialsError';
}

export interface TemporalCredentials {
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

export const TLS_FILE_KEYS = ['clientCert', 'clientKey', 'serverCA'] as const;

/** The files temporal.tls names that cannot be read, one line each ("temporal.tls.clientCert: cannot read …"). */
export function tlsFileProblems(config: Config): string[] {
  const problems: string[] = [];
  readTlsFiles(config.temporal.tls, problems);
  return problems;
}

/**
 * The connection options for Temporal the config asks for. Throws a CredentialsError naming the
 * key when a file cannot be read or the API key's variable is not set: connecting without them
 * would only fail later, with the server's less telling refusal.
 */
export function temporalCredentials(config: Config, env: NodeJS.ProcessEnv = process.env): TemporalCredentials {
  const { tls, apiKeyEnv } = config.temporal;
  const problems: string[] = [];
  const files = readTlsFiles(tls, problems);
  const apiKey = apiKeyEnv ? env[apiKeyEnv] : undefined;
  if (apiKeyEnv && !apiKey)
    problems.push(
      `temporal.apiKeyEnv: ${apiKeyEnv} is not set in this process's environment; set it to the API key, or remove temporal.apiKeyEnv`,
    );
  if (problems.length) throw new CredentialsError(`cannot connect to Temporal: ${problems.join('; ')}`);
  const options: TemporalCredentials = {};
  if (files) options.tls = files;
  else if (typeof tls === 'boolean') options.tls = tls;
  if (apiKey) options.apiKey = apiKey;
  return options;
}

function readTlsFiles(tls: Config['temporal']['tls'], problems: string[]): TLSConfig | undefined {
  if (typeof tls !== 'object') return undefined;
  const read = (key: (typeof TLS_FILE_KEYS)[number]): Buffer | undefined => {
    const path = tls[key];
    if (path === undefined) return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      problems.push(
        `temporal.tls.${key}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      );
      return undefined;
    }
  };
  const [crt, key, ca] = TLS_FILE_KEYS.map(read);
  return {
    ...(crt && key ? { clientCertPair: { crt, key } } : {}),
    ...(ca ? { serverRootCACertificate: ca } : {}),
    ...(tls.serverName ? { serverNameOverride: tls.serverName } : {}),
  };
}
