// Starting, following and steering runs from outside Temporal (CLI, Slack bot, alarm intake).
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { dataConverterFromEnv } from '../codec/env';
import type { Config, Service } from '../config/schema';
import { temporalCredentials } from '../config/temporal-credentials';
import { activeAddress, clusterEndpoints } from './control-plane';
import { FollowingClient, failoverAfterMsOf, type FollowingOptions, type GrpcInterceptors } from './following';
import { residencyRuleOf, residencyViolation } from '../../contract/policy/residency';
import { CONTROL_TASK_QUEUE, runWorkflowId } from '../../contract/runbook/ids';
import type {
  AbortInput,
  ApproveInput,
  Mode,
  OperateInput,
  RunbookDoc,
  RunInput,
  RunRecord,
} from '../../contract/runbook/types';
import { SA } from '../../../workflows/search-attributes';
import { signDecision, type DecisionSigner } from '../sign';
import { clientInterceptors, startTracing, type Tracing } from '../tracing';

export class InputError extends Error {
  override name = 'InputError';
}

/** A valid request the system declined: a run already in flight, an approver not allowed. */
export class RefusedError extends Error {
  override name = 'RefusedError';
}

let clientTracing: Tracing | undefined | null = null;

/** One tracer per process for its clients: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else none. */
function tracingForClients(): Tracing | undefined {
  if (clientTracing === null) clientTracing = startTracing('regionshift');
  return clientTracing;
}

/** Sends the spans this process's clients made (the CLI calls it before it exits). */
export async function flushClientTracing(): Promise<void> {
  if (clientTracing) await clientTracing.spanProcessor.forceFlush().catch(() => undefined);
}

/**
 * TEMPORAL_ADDRESS when set (the stack pins a process to a cluster that way); else, with a
 * replicated control plane, the cluster the namespace is active in; else temporal.address.
 */
export async function temporalAddressFor(config: Config): Promise<string> {
  if (process.env.TEMPORAL_ADDRESS) return process.env.TEMPORAL_ADDRESS;
  if (!clusterEndpoints(config)) return config.temporal.address;
  try {
    return await activeAddress(config);
  } catch (err) {
    throw new Error(`${(err as Error).message}; is the stack up? (regionshift stack up)`);
  }
}

/**
 * Why a connection failed, with what to do: the SDK's "Failed to connect" hides the server's
 * answer in its cause, and a refused credential is not a stack that is down.
 */
function connectFailure(config: Config, address: string, err: Error): string {
  const cause = err.cause as { code?: number; details?: string; message?: string } | undefined;
  const why = cause?.details ?? cause?.message;
  const detail = why ? `${err.message}: ${why}` : err.message;
  // gRPC UNAUTHENTICATED (16), PERMISSION_DENIED (7).
  if (cause?.code === 16 || cause?.code === 7)
    return `Temporal at ${address} refused this client's credentials (${detail}); check temporal.apiKeyEnv and temporal.tls`;
  // A TLS handshake the server rejects, or whose server this client does not trust, never gets
  // further than the deadline either.
  if (config.temporal.tls)
    return `cannot reach Temporal at ${address} (${detail}); is it up, and do temporal.tls's certificate and CA match the server's?`;
  return `cannot reach Temporal at ${address} (${detail}); is the stack up? (regionshift stack up)`;
}

/**
 * opts.address: that cluster, whatever the config says (a control-plane failover's target).
 * opts.interceptors: the connection's gRPC interceptors instead of the SDK's default retries.
 */
export async function connect(
  config: Config,
  opts: { address?: string; interceptors?: GrpcInterceptors } = {},
): Promise<Client> {
  // First: bad keys are the caller's to fix, whether or not Temporal is reachable.
  const dataConverter = dataConverterFromEnv();
  const address = opts.address ?? (await temporalAddressFor(config));
  const credentials = temporalCredentials(config);
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address,
      connectTimeout: '5s',
      ...credentials,
      ...(opts.interceptors ? { interceptors: opts.interceptors } : {}),
    });
  } catch (err) {
    throw new Error(connectFailure(config, address, err as Error));
  }
  // A run's trace starts at its StartWorkflow span here; workers add the run, step and activity spans.
  return new Client({
    connection,
    namespace: config.temporal.namespace,
    dataConverter,
    interceptors: clientInterceptors(tracingForClients()),
  });
}

/**
 * A client for a long-lived process: follows the namespace when the control plane is replicated
 * (src/lib/runs/following.ts); with a single cluster, the one client connect() makes.
 * `failover`: this process may move the namespace (the intake), after temporal.controlPlaneFailoverAfter.
 */
export async function connectFollowing(
  config: Config,
  opts: Omit<FollowingOptions, 'connectTo' | 'failoverAfterMs'> & { failover?: boolean } = {},
): Promise<FollowingClient> {
  const address = await temporalAddressFor(config);
  const failoverAfterMs = opts.failover ? failoverAfterMsOf(config) : undefined;
  return FollowingClient.connect(config, address, {
    ...(opts.log ? { log: opts.log } : {}),
    ...(failoverAfterMs !== undefined ? { failoverAfterMs } : {}),
    connectTo: (a, interceptors) => connect(config, { address: a, ...(interceptors ? { interceptors } : {}) }),
  });
}

/**
 * The service's finished runs that left a record, newest first, from its newest `lookBack` runs:
 * what reconcile, failback and undrain look back through to find the run they follow.
 */
export async function* finishedRecords(client: Client, service: string, lookBack = 25): AsyncGenerator<RunRecord> {
  const runs: { runId: string; start: number; running: boolean }[] = [];
  for await (const w of client.workflow.list({ query: `WorkflowId = "${runWorkflowId(service)}"` })) {
    runs.push({ runId: w.runId, start: w.startTime.getTime(), running: w.status.name === 'RUNNING' });
    if (runs.length >= 200) break;
  }
  runs.sort((a, b) => b.start - a.start);
  for (const r of runs.slice(0, lookBack)) {
    if (r.running) continue;
    let rec: RunRecord;
    try {
      rec = await awaitRecord(client, runWorkflowId(service), r.runId);
    } catch {
      continue; // terminated, or failed without a record
    }
    yield rec;
  }
}

export function findService(config: Config, name: string): Service {
  const service = config.services.find((s) => s.name === name);
  if (!service)
    throw new InputError(`unknown service "${name}"; known: ${config.services.map((s) => s.name).join(', ')}`);
  return service;
}

export interface StartRequest {
  service: string;
  target: string;
  source?: string;
  mode: Mode;
  dryRun: boolean;
  requestedBy: string;
  trigger: string;
  triggeredAt?: number;
}

/** Checks what can be checked before anything starts; every problem names the bad value. */
export function buildRunInput(config: Config, runbook: RunbookDoc, req: StartRequest): RunInput {
  const service = findService(config, req.service);
  const known = service.regions.join(', ');
  if (!service.regions.includes(req.target))
    throw new InputError(`unknown region "${req.target}" for ${service.name}; its regions: ${known}`);
  if (req.source !== undefined && !service.regions.includes(req.source))
    throw new InputError(`unknown region "${req.source}" for ${service.name}; its regions: ${known}`);
  if (req.source === req.target) throw new InputError(`source and target are both ${req.target}: pick another --to`);
  const residency = residencyRuleOf(config, service);
  const violation = residencyViolation(residency, service.name, req.target);
  if (violation) throw new InputError(violation);
  return {
    runbook,
    service: service.name,
    regions: service.regions,
    mode: req.mode,
    source: req.source,
    target: req.target,
    dryRun: req.dryRun,
    policy: service.policy,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    triggeredAt: req.triggeredAt,
    // An unplanned failover from a region the person names: they report it lost (RunInput.reportedDown).
    ...(runbook.kind === 'failover' && req.mode === 'unplanned' && req.source ? { reportedDown: req.source } : {}),
    ...(service.traffic.provider === 'route53' && service.traffic.routing === 'weighted'
      ? { trafficDrain: service.traffic.drain }
      : {}),
    ...(service.cache ? { cache: true } : {}),
  };
}

export interface Started {
  workflowId: string;
  runId: string;
  /** False when the request joined a run that was already in progress. */
  started: boolean;
}

/** Starts the run; single flight per service: a second start joins (when asked to) or is refused. */
export async function startRun(client: Client, input: RunInput, opts: { join?: boolean } = {}): Promise<Started> {
  const workflowId = runWorkflowId(input.service);
  try {
    const handle = await client.workflow.start('runbook', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      typedSearchAttributes: [
        { key: SA.service, value: input.service },
        { key: SA.target, value: input.target },
        { key: SA.mode, value: input.dryRun ? 'dry-run' : input.mode },
        { key: SA.trigger, value: input.trigger },
        ...(input.source ? [{ key: SA.source, value: input.source }] : []),
      ],
      staticSummary: `${input.runbook.kind} ${input.service} → ${input.target} (${input.dryRun ? 'dry run' : input.mode}), by ${input.requestedBy}`,
      staticDetails: `Runbook ${input.runbook.file} sha256 ${input.runbook.hash}. Trigger: ${input.trigger}.`,
    });
    return { workflowId, runId: handle.firstExecutionRunId, started: true };
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const running = client.workflow.getHandle(workflowId);
    const desc = await running.describe();
    if (opts.join) return { workflowId, runId: desc.runId, started: false };
    let what = '';
    try {
      const rec = await running.query<RunRecord>('progress');
      what = ` (${rec.kind} ${rec.source ?? '?'} → ${rec.target}, ${rec.mode}, by ${rec.requestedBy}, at step ${rec.currentStep ?? '-'})`;
    } catch {
      // The record is a nicety; the refusal stands without it.
    }
    throw new RefusedError(
      `${input.service} already has a run in progress: ${workflowId} run ${desc.runId}${what}. Follow it with: regionshift status ${input.service}`,
    );
  }
}

/** The run's record: its result, the record attached to its failure, or its live progress. */
export async function runRecord(client: Client, workflowId: string, runId?: string): Promise<RunRecord> {
  const desc = await client.workflow.getHandle(workflowId, runId).describe();
  if (desc.status.name === 'RUNNING') return progressOf(client, desc);
  return awaitRecord(client, workflowId, desc.runId);
}

/** How long a query of a run's progress waits for a worker; a live one answers in milliseconds. */
const PROGRESS_QUERY_MS = 10_000;

/**
 * A running run's live record. When no control worker of its version polls (they are down, or a
 * deploy removed the build the run is pinned to), the query would wait out the server's timeout
 * and fail as "Failed to query Workflow"; this says which run, where it stands, and what to do.
 */
export async function progressOf(client: Client, desc: WorkflowExecutionDescription): Promise<RunRecord> {
  const handle = client.workflow.getHandle(desc.workflowId, desc.runId);
  try {
    return await client.connection.withDeadline(Date.now() + PROGRESS_QUERY_MS, () =>
      handle.query<RunRecord>('progress'),
    );
  } catch (err) {
    const step = desc.typedSearchAttributes.get(SA.step);
    const build = desc.raw.workflowExecutionInfo?.versioningInfo?.deploymentVersion?.buildId;
    throw new Error(
      `${desc.workflowId} (run ${desc.runId}, started ${desc.startTime.toISOString()}${step ? `, at step ${step}` : ''}) is running, but no worker answered for it within ${PROGRESS_QUERY_MS / 1000} s (${(err as Error).message}). ` +
        (build
          ? `It is pinned to build ${build}: start a control worker of that build, or end the run: temporal workflow terminate -w ${desc.workflowId} -r ${desc.runId} (README: Changing workflow code)`
          : 'Are the control workers up? (regionshift stack status)'),
    );
  }
}

export async function awaitRecord(client: Client, workflowId: string, runId?: string): Promise<RunRecord> {
  try {
    return await client.workflow.getHandle(workflowId, runId).result();
  } catch (err) {
    const rec = recordFromFailure(err);
    if (rec) return rec;
    throw err;
  }
}

function recordFromFailure(err: unknown): RunRecord | undefined {
  if (!(err instanceof WorkflowFailedError)) return undefined;
  const cause = err.cause;
  if (cause instanceof ApplicationFailure && cause.details?.[0]) return cause.details[0] as RunRecord;
  return undefined;
}

/** Resolves "ledger" or "regionshift-ledger" to the run's workflow id. */
export function workflowIdOf(config: Config, ref: string): string {
  if (config.services.some((s) => s.name === ref)) return runWorkflowId(ref);
  if (ref.startsWith('regionshift-')) return ref;
  const services = config.services.map((s) => s.name).join(', ');
  throw new InputError(
    isRunId(ref)
      ? `"${ref}" is the id of one run; name its service (${services}): this acts on the service's current run`
      : `"${ref}" is neither a service (${services}) nor a workflow id (regionshift-<service>)`,
  );
}

/** A Temporal run id, as `failover` and the Temporal UI print it. */
export function isRunId(ref: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ref);
}

/** The workflow, among the services' runs, that has run `runId`. */
export async function workflowOfRun(client: Client, config: Config, runId: string): Promise<string> {
  for (const s of config.services) {
    const workflowId = runWorkflowId(s.name);
    try {
      await client.workflow.getHandle(workflowId, runId).describe();
      return workflowId;
    } catch (err) {
      if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
    }
  }
  throw new InputError(
    `no run ${runId} among the runs of ${config.services.map((s) => s.name).join(', ')} (the server may have deleted it after the namespace's retention)`,
  );
}

async function update(
  client: Client,
  workflowId: string,
  name: string,
  arg: ApproveInput | AbortInput | OperateInput,
): Promise<string> {
  try {
    return await client.workflow.getHandle(workflowId).executeUpdate<string, [typeof arg]>(name, { args: [arg] });
  } catch (err) {
    // The workflow (its validator, or the worker that verified the signature) said no: a refusal with its own reason.
    if (err instanceof WorkflowUpdateFailedError) throw new RefusedError(err.cause?.message ?? err.message);
    if ((err as Error).name === 'WorkflowNotFoundError') throw new RefusedError(`no run in progress for ${workflowId}`);
    throw err;
  }
}

/** The run a decision is for: its run id, and the step waiting for approval (signed with the decision). */
async function target(client: Client, workflowId: string): Promise<{ runId: string; rec?: RunRecord }> {
  let desc;
  try {
    desc = await client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') throw new RefusedError(`no run in progress for ${workflowId}`);
    throw err;
  }
  if (desc.status.name !== 'RUNNING') return { runId: desc.runId };
  return { runId: desc.runId, rec: await progressOf(client, desc) };
}

/**
 * Approves or rejects the step the run waits at, signed by `signer` (the person's SSH key, or the
 * Slack bot). Without a signer the decision goes unsigned, and the run refuses it.
 */
export async function approveRun(
  client: Client,
  workflowId: string,
  a: Omit<ApproveInput, 'signature'>,
  signer?: DecisionSigner,
): Promise<string> {
  const { runId, rec } = await target(client, workflowId);
  const stepId = rec?.pendingApproval?.stepId;
  if (!stepId)
    throw new RefusedError(
      `run ${workflowId} is not waiting for an approval${rec ? ` (it is at step ${rec.currentStep ?? '-'})` : ''}`,
    );
  const signature = signer
    ? await signDecision(signer, {
        kind: a.decision,
        workflowId,
        runId,
        subject: stepId,
        by: a.by,
        groups: a.groups ?? [],
        reason: a.reason ?? '',
      })
    : undefined;
  return update(client, workflowId, 'approve', { ...a, ...(signature ? { signature } : {}) });
}

/**
 * Retry, skip or compensate the failed step a run waits at (onFailure: ask), or pause or resume
 * it, signed as approveRun is: the signature names the step, so it is worthless for any other.
 */
export async function operateRun(
  client: Client,
  workflowId: string,
  o: Omit<OperateInput, 'signature'>,
  signer?: DecisionSigner,
): Promise<string> {
  const { runId, rec } = await target(client, workflowId);
  const subject = o.action === 'pause' || o.action === 'resume' ? 'run' : rec?.pendingDecision?.stepId;
  if (!subject)
    throw new RefusedError(
      `run ${workflowId} has no failed step waiting for a decision${rec ? ` (it is at step ${rec.currentStep ?? '-'})` : ''}`,
    );
  const signature = signer
    ? await signDecision(signer, {
        kind: o.action,
        workflowId,
        runId,
        subject,
        by: o.by,
        groups: o.groups ?? [],
        reason: o.reason,
      })
    : undefined;
  return update(client, workflowId, 'operate', { ...o, ...(signature ? { signature } : {}) });
}

/** Aborts the run, signed as approveRun is; the run compensates what it did. */
export async function abortRun(
  client: Client,
  workflowId: string,
  a: Omit<AbortInput, 'signature' | 'signed'>,
  signer?: DecisionSigner,
): Promise<string> {
  const { runId } = await target(client, workflowId);
  const signature = signer
    ? await signDecision(signer, {
        kind: 'abort',
        workflowId,
        runId,
        subject: 'run',
        by: a.by,
        groups: a.groups ?? [],
        reason: a.reason,
      })
    : undefined;
  return update(client, workflowId, 'abort', { ...a, ...(signature ? { signature } : {}) });
}
