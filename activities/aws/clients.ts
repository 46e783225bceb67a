// How a region's worker builds its AWS clients: for its own region (or, where an API demands it,
// the region that API must be called in), with credentials from its own environment. Nothing
// here ever comes from a workflow input (docs/safety.md, invariant 6): the default credential chain
// (environment, shared config, SSO, container or instance role) or, when the config names one,
// a role assumed through STS with those credentials.
import { fromTemporaryCredentials } from '@aws-sdk/credential-providers';

type AwsCredentialIdentity = { accessKeyId: string; secretAccessKey: string };
type AwsCredentialIdentityProvider = ReturnType<typeof fromTemporaryCredentials>;

export interface AwsTarget {
  /** The region the API is called in (and requests are signed for). */
  region: string;
  /** An endpoint other than the SDK's default: a stand-in (moto, a test server) or, for ARC, a cluster endpoint. */
  endpointUrl?: string;
  /** endpointUrl is a stand-in (moto in the local stack): sign with dummy credentials unless real ones are in the environment. Default: true when endpointUrl is set. */
  standIn?: boolean;
  /** A role to assume with the worker's own credentials; absent: use them directly. */
  roleArn?: string;
}

export interface AwsClientConfig {
  region: string;
  endpoint?: string;
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  maxAttempts: number;
}

/**
 * SDK attempts per call. The SDK's standard retry strategy retries throttling and transient
 * errors (5xx, timeouts, connection resets) with exponential backoff and jitter; what is still
 * failing after these is handed to Temporal's activity retry, which backs off further.
 */
export const SDK_MAX_ATTEMPTS = 4;

/** Credentials that only a stand-in endpoint accepts: moto ignores signatures but the SDK must sign. */
const STAND_IN_CREDENTIALS: AwsCredentialIdentity = { accessKeyId: 'testing', secretAccessKey: 'testing' };

const assumed = new Map<string, AwsCredentialIdentityProvider>();

export function awsClientConfig(
  target: AwsTarget,
  env: NodeJS.ProcessEnv = process.env,
  maxAttempts = SDK_MAX_ATTEMPTS,
): AwsClientConfig {
  const config: AwsClientConfig = { region: target.region, maxAttempts };
  if (target.endpointUrl) {
    config.endpoint = target.endpointUrl;
    // Without real credentials in the environment the SDK would walk the chain to the instance
    // metadata service and time out on a laptop; a stand-in accepts anything.
    if ((target.standIn ?? true) && !env.AWS_ACCESS_KEY_ID && !env.AWS_PROFILE)
      config.credentials = STAND_IN_CREDENTIALS;
  }
  if (target.roleArn) {
    // One provider per role and region: it caches and refreshes the session itself.
    const key = `${target.roleArn}|${target.region}|${target.endpointUrl ?? ''}`;
    let provider = assumed.get(key);
    if (!provider) {
      provider = fromTemporaryCredentials({
        params: { RoleArn: target.roleArn, RoleSessionName: `regionshift-${target.region}`, DurationSeconds: 3600 },
        ...(config.credentials ? { masterCredentials: config.credentials } : {}),
        clientConfig: { region: target.region, ...(target.endpointUrl ? { endpoint: target.endpointUrl } : {}) },
      });
      assumed.set(key, provider);
    }
    config.credentials = provider;
  }
  return config;
}

/** The region named by an ARN (arn:aws:rds:us-west-2:123456789012:cluster:x → us-west-2). */
export function regionOfArn(arn: string): string | undefined {
  const region = arn.split(':')[3];
  return region ? region : undefined;
}
