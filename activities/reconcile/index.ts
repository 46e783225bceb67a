// The reconciliation and failback activities a region's worker runs (registered with the rest in
// activities/index.ts). Each names the service; connection details and passwords come from the
// worker's own config and environment.
import type { Config } from '../../src/lib/config/schema';
import type { AuroraOptions } from '../db/aurora/service';
import type {
  ApplyInput,
  ApplyResult,
  CaseResolveInput,
  CaseResolveResult,
  CasesListInput,
  ClassifyInput,
  ClassifyResult,
  FailbackCheckInput,
  FailbackCheckResult,
  PreserveOldInput,
  PreserveOldResult,
  ReconcileCase,
  ReconcileReport,
  ReportInput,
  VerifyInput,
  VerifyResult,
} from '../../src/contract/reconcile';
import { createApply } from './apply';
import { createCases } from './cases';
import { createClassify } from './classify';
import { createPreserve } from './preserve';
import { createReport } from './audit';
import { createVerify } from './verify';

export interface ReconcileActivities {
  /** On the old primary's worker: keep it read-only on its own timeline (Aurora: restore its snapshot read-only). */
  reconcilePreserve(input: PreserveOldInput): Promise<PreserveOldResult>;
  /** On the new primary's worker: read both journals over the window, classify, stage. */
  reconcileClassify(input: ClassifyInput): Promise<ClassifyResult>;
  reconcileApply(input: ApplyInput): Promise<ApplyResult>;
  reconcileVerify(input: VerifyInput): Promise<VerifyResult>;
  reconcileReport(input: ReportInput): Promise<ReconcileReport>;
  reconcileCasesList(input: CasesListInput): Promise<ReconcileCase[]>;
  reconcileCasesResolve(input: CaseResolveInput): Promise<CaseResolveResult>;
  failbackCheck(input: FailbackCheckInput): Promise<FailbackCheckResult>;
}

export function createReconcileActivities(
  config: Config,
  region: string,
  options: { aurora?: AuroraOptions } = {},
): ReconcileActivities {
  const report = createReport(config, region);
  const cases = createCases(config, region);
  return {
    reconcilePreserve: createPreserve(config, region, options.aurora),
    reconcileClassify: createClassify(config, region),
    reconcileApply: createApply(config, region),
    reconcileVerify: createVerify(config, region),
    reconcileReport: report.reconcileReport,
    reconcileCasesList: cases.reconcileCasesList,
    reconcileCasesResolve: cases.reconcileCasesResolve,
    failbackCheck: report.failbackCheck,
  };
}
