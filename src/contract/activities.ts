// The contract between runbook workflows and the region workers' activities. Inputs name a
// service and never carry credentials: each worker resolves connection details and secrets from
// its own config and environment (docs/safety.md, invariant 6). Results are the audit record's raw data.
//
// Every activity is idempotent: retried after a crash at any point it converges and says what
// it found ("already fenced", "already primary") instead of failing or acting twice.

export interface ServiceRef {
  service: string;
}

/** What the region's database node is right now, as seen from that region's worker. */
export interface DbNodeState {
  region: string;
  reachable: boolean;
  /** Why it could not be reached, when it could not. */
  error?: string;
  role?: 'primary' | 'standby';
  /** A primary made read-only by a regionshift fence. */
  fenced?: boolean;
  /** Timeline id of the node's current WAL. */
  timeline?: number;
  /** Primary: pg_current_wal_lsn(). Standby: pg_last_wal_replay_lsn(). */
  lsn?: string;
  /** Standby only: last WAL position received from the primary. */
  receivedLsn?: string;
  /** Standby only: whether its WAL receiver is streaming, and from where (host:port). */
  streamingFrom?: string;
  /** Standby only: commit time of the last replayed transaction (ISO). */
  lastReplayedCommitAt?: string;
  /** Standby only: when it last heard from its primary (ISO). */
  lastHeardFromPrimaryAt?: string;
}

export interface FenceResult {
  region: string;
  /** True when the node already was fenced (a retry, or a second run). */
  alreadyFenced: boolean;
  /** The application role was refused a write after the fence: the proof of one writer. */
  verified: boolean;
  /** WAL position after the fence: everything acknowledged before it is at or below this. */
  lsn: string;
  /** Application sessions terminated so no transaction opened before the fence can commit. */
  terminatedSessions: number;
  /** How the fence was made and proven, when the provider has more to say (aurora-global: database and edge). */
  detail?: string;
}

export interface UnfenceResult {
  region: string;
  /** False when the node was not fenced (nothing to undo) or no longer a primary. */
  unfenced: boolean;
  detail: string;
}

export interface WaitForLagInput extends ServiceRef {
  /** The fenced source's final WAL position; the target must have replayed up to it. */
  sourceLsn: string;
  timeoutMs: number;
}

export interface LagResult {
  region: string;
  replayedLsn: string;
  /** Bytes of WAL the target had still to replay when the wait started. */
  initialLagBytes: number;
  waitedMs: number;
}

export interface PromoteInput extends ServiceRef {
  /**
   * planned: a promotion that must not lose writes (Aurora: SwitchoverGlobalCluster); unplanned:
   * the source may be gone and data loss was accepted by policy or a person (Aurora:
   * FailoverGlobalCluster with AllowDataLoss). Absent: planned.
   */
  mode?: 'planned' | 'unplanned';
  /** The region the writer moves away from, when the run knows it. */
  source?: string;
}

export interface PromoteResult {
  region: string;
  /** False when the node already was a primary: the retry converged. */
  promoted: boolean;
  alreadyPrimary: boolean;
  timeline: number;
  lsn: string;
  /** The replication state right before promotion (the run's RPO evidence). */
  before: DbNodeState;
  /** How the target became the writer (aurora-global: switchover, failover or detach-and-promote). */
  method?: 'pg_promote' | 'switchover' | 'failover' | 'detach-and-promote' | 'promote-read-replica';
  /** Aurora: FailoverState.IsDataLossAllowed of the operation, as AWS reported it. */
  dataLossAllowed?: boolean;
  /** What else was done or found (regions fenced or left to fence, operations waited on). */
  detail?: string;
}

/** db.waitForLag then db.promote, as one activity on the target (workflows/actions.ts, promoteAfterLag). */
export type PromoteAfterLagInput = PromoteInput & WaitForLagInput;

export interface PromotedAfterLag extends PromoteResult {
  /** The lag confirmation that came first. */
  lag: LagResult;
}

/**
 * The details of a dbPromoteAfterLag failure that came after the lag was confirmed: the run then
 * records the confirmation as done and the promotion as failed. Without them, the lag was not confirmed.
 */
export interface LagConfirmedDetails {
  lagConfirmed: LagResult;
}

export interface RejoinInput extends ServiceRef {
  /** The region that is now primary; this worker's node becomes its standby. */
  primaryRegion: string;
}

export interface FollowInput extends ServiceRef {
  /** The writer to follow; absent: the one writable primary among the service's other regions. */
  primaryRegion?: string;
}

export interface RejoinResult {
  region: string;
  /** False when the node already streamed from the new primary. */
  rejoined: boolean;
  /** pg_rewind had to discard WAL the node wrote after the divergence point. */
  rewound: boolean;
  /**
   * How it came to follow: it already did; a reload of primary_conninfo was enough (a standby
   * that had not replayed past the fork); or a stop, pg_rewind and start (or a fresh copy).
   */
  how?: 'already' | 'reload' | 'rewind' | 'reclone';
  streamingFrom: string;
  /** What the provider found or could not do, when `rejoined` alone does not say it. */
  detail?: string;
  /**
   * dbRejoinAsStandby: the node as it stands once rejoined (dbDescribe's answer), for the run's
   * record of where every region ended, so the run needs no round of describes after the rejoin.
   * Absent when the describe failed (the run then describes it itself).
   */
  state?: DbNodeState;
}

export interface VerifyWritesResult {
  region: string;
  /** A row was written as the application role and read back. */
  ok: boolean;
  latencyMs: number;
  /** How it was checked, when not by a write as the application role. */
  detail?: string;
}

export interface PreserveInput extends ServiceRef {
  /** When the unplanned failover happened (ISO): only evidence created after it is looked for. */
  since: string;
}

export interface PreserveResult {
  region: string;
  /** A copy exists now (made by this call or an earlier one). */
  preserved: boolean;
  /** The snapshot AWS made of the old primary, and the manual copy regionshift keeps of it. */
  source?: string;
  copy?: string;
  detail: string;
}

export interface TrafficRecord {
  /** The region the record sends clients to (weighted and failover records: also its SetIdentifier). */
  region: string;
  target: string;
  weight?: number;
  failover?: 'PRIMARY' | 'SECONDARY';
  /** Geolocation records: the location answered (default, continent:EU, country:DE, country:US-CA). */
  location?: string;
  /** Route 53 ARC: whether the region's routing control lets clients reach it. */
  routingControl?: 'On' | 'Off';
  ttl: number;
}

export interface TrafficState {
  recordName: string;
  records: TrafficRecord[];
}

export interface ShiftInput extends ServiceRef {
  from: string;
  to: string;
}

export interface ShiftResult {
  /** The records exactly as they were: what compensation and failback restore. */
  before: TrafficState;
  after: TrafficState;
  changeId?: string;
  /** Clients may keep resolving to the old region for up to this long. */
  maxCachedSeconds: number;
  /** False when traffic already pointed at the target. */
  changed: boolean;
  /** Geolocation answers left on the region traffic moved from, because residency allows no other region to take them. */
  kept?: KeptLocation[];
}

export interface KeptLocation {
  /** The location label (continent:EU). */
  location: string;
  region: string;
  why: string;
}

export interface RestoreInput extends ServiceRef {
  state: TrafficState;
}

export interface DrainInput extends ServiceRef {
  /** The region to take out of service. */
  region: string;
  /** Where its traffic goes when the config's drain mode (or the routing) needs one region to take it. */
  to?: string;
}

export interface UndrainInput extends ServiceRef {
  /** The region to bring back into service with its configured share. */
  region: string;
}

/** Activities a region worker registers on its task queue `region.<name>`. */
export interface RegionActivities {
  dbDescribe(input: ServiceRef): Promise<DbNodeState>;
  dbFenceWrites(input: ServiceRef): Promise<FenceResult>;
  dbUnfenceWrites(input: ServiceRef): Promise<UnfenceResult>;
  dbWaitForLag(input: WaitForLagInput): Promise<LagResult>;
  dbPromote(input: PromoteInput): Promise<PromoteResult>;
  /**
   * dbWaitForLag, then dbPromote only once it has returned. A name of its own, not a field of
   * dbPromote's input: an older worker without it fails the step instead of promoting unchecked.
   */
  dbPromoteAfterLag(input: PromoteAfterLagInput): Promise<PromotedAfterLag>;
  dbRejoinAsStandby(input: RejoinInput): Promise<RejoinResult>;
  /** A standby of the service (never a primary) starts following the writer; see FollowInput. */
  dbFollowWriter(input: FollowInput): Promise<RejoinResult>;
  dbVerifyWrites(input: ServiceRef): Promise<VerifyWritesResult>;
  /** After an unplanned failover: keep the provider's evidence of the old primary (Aurora: its snapshot). */
  dbPreserve(input: PreserveInput): Promise<PreserveResult>;
  trafficDescribe(input: ServiceRef): Promise<TrafficState>;
  trafficShift(input: ShiftInput): Promise<ShiftResult>;
  trafficRestore(input: RestoreInput): Promise<TrafficState>;
  trafficDrain(input: DrainInput): Promise<ShiftResult>;
  trafficUndrain(input: UndrainInput): Promise<ShiftResult>;
}

// --- the cache (a service's second store: Redis, ElastiCache Global Datastore) ------------------

/** A region's cache node, as that region's worker (or the target's) sees it. */
export interface CacheNodeState {
  region: string;
  reachable: boolean;
  error?: string;
  role?: 'primary' | 'replica';
  /** A primary whose writes a regionshift fence refuses. */
  fenced?: boolean;
  /** Replication offset: master_repl_offset on a primary, slave_repl_offset on a replica. */
  offset?: number;
  /** Replica: host:port (Redis) or region (ElastiCache) of the primary it follows. */
  replicaOf?: string;
}

export interface CacheFenceResult {
  region: string;
  alreadyFenced: boolean;
  /** A write was refused after the fence (Redis); false where the provider cannot fence on its own. */
  verified: boolean;
  /** The primary's replication offset after the fence: the target must reach it before promotion. */
  offset?: number;
  /** The provider has no fence of its own: its managed promotion demotes the old primary (elasticache-global). */
  managed?: boolean;
  detail: string;
}

export interface CachePromoteInput extends ServiceRef {
  mode?: 'planned' | 'unplanned';
  source?: string;
  /** Planned: the fenced source's offset, which the target must have replicated. */
  offset?: number;
  /** How long to wait for that offset. */
  timeoutMs?: number;
}

export interface CachePromoteResult {
  region: string;
  promoted: boolean;
  alreadyPrimary: boolean;
  /** The replica's offset (or lag) right before promotion: the cache's RPO evidence. */
  before: CacheNodeState;
  detail: string;
}

export interface CacheRepointInput extends ServiceRef {
  /** The region whose cache is now the primary; every other region's node follows it. */
  primaryRegion: string;
  /** Only these regions (a failback's returning old primary); default every other region. */
  regions?: string[];
  /** Fail (retryable) while a region does not follow yet, instead of reporting it (the fence-on-return watcher). */
  untilFollowing?: boolean;
}

export interface CacheRepointResult {
  regions: { region: string; following: boolean; detail: string }[];
}

/** Activities for a service's `cache`; a service without one never schedules them. */
export interface CacheActivities {
  cacheDescribe(input: ServiceRef): Promise<CacheNodeState>;
  cacheFence(input: ServiceRef): Promise<CacheFenceResult>;
  cacheUnfence(input: ServiceRef): Promise<UnfenceResult>;
  cachePromote(input: CachePromoteInput): Promise<CachePromoteResult>;
  cacheRepoint(input: CacheRepointInput): Promise<CacheRepointResult>;
}
