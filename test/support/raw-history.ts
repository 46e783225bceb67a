// Histories as the Temporal server stores and serves them, read through the WorkflowService with
// no data converter at all: what anyone with access to the server, or its database, can read.
import type { Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export interface RawHistory {
  workflowId: string;
  runId: string;
  /** The history's protobuf encoding: the bytes the server keeps. */
  bytes: Buffer;
  /** Every payload in it, as stored, but search attributes. */
  payloads: Payload[];
  /** Where each of payloads is: event id and field path. */
  where: string[];
  /** Search attribute values ("name=value"): the server indexes them, so no codec touches them. */
  indexed: string[];
}

function payloadsIn(v: unknown, path: string, out: { payloads: Payload[]; where: string[]; indexed: string[] }): void {
  if (!v || typeof v !== 'object' || v instanceof Uint8Array) return;
  const o = v as Record<string, unknown>;
  if (o.data instanceof Uint8Array && o.metadata && typeof o.metadata === 'object') {
    out.payloads.push(o as Payload);
    out.where.push(path);
  }
  for (const [k, child] of Object.entries(o)) {
    if (k === 'searchAttributes') {
      const fields = (child as { indexedFields?: Record<string, Payload> } | null)?.indexedFields ?? {};
      for (const [name, p] of Object.entries(fields))
        out.indexed.push(`${name}=${Buffer.from(p.data ?? []).toString()}`);
    } else {
      payloadsIn(child, `${path}.${k}`, out);
    }
  }
}

export async function rawHistory(
  connection: Connection,
  namespace: string,
  workflowId: string,
  runId?: string,
): Promise<RawHistory> {
  const events: temporal.api.history.v1.IHistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  let resolvedRunId = runId ?? '';
  do {
    const page = await connection.workflowService.getWorkflowExecutionHistory({
      namespace,
      execution: { workflowId, runId },
      nextPageToken,
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  if (!resolvedRunId) {
    const started = events[0]?.workflowExecutionStartedEventAttributes;
    resolvedRunId = started?.originalExecutionRunId ?? '';
  }
  const history = temporal.api.history.v1.History.create({ events });
  const found = { payloads: [] as Payload[], where: [] as string[], indexed: [] as string[] };
  events.forEach((e) => payloadsIn(e, `event ${String(e.eventId)}`, found));
  return {
    workflowId,
    runId: resolvedRunId,
    bytes: Buffer.from(temporal.api.history.v1.History.encode(history).finish()),
    ...found,
  };
}

/** Every execution in the namespace, open or closed. */
export async function allRawHistories(connection: Connection, namespace: string): Promise<RawHistory[]> {
  const out: RawHistory[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await connection.workflowService.listWorkflowExecutions({ namespace, pageSize: 100, nextPageToken });
    for (const e of page.executions ?? [])
      out.push(await rawHistory(connection, namespace, e.execution!.workflowId!, e.execution!.runId!));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return out;
}
