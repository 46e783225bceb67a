// Bundles workflow code once at build time, so a worker starts in a second instead of running
// webpack on every start (which, with one worker per region on a small machine, adds up).
import { bundleWorkflowCode } from '@temporalio/worker';
import { writeFileSync } from 'node:fs';
import {
  UNTRACED_INTERCEPTOR_MODULES,
  WORKFLOW_BUNDLE,
  WORKFLOW_BUNDLE_UNTRACED,
  WORKFLOW_INTERCEPTOR_MODULES,
  WORKFLOWS_PATH,
} from '../../workers/bundle';

async function main(): Promise<void> {
  for (const [file, workflowInterceptorModules] of [
    [WORKFLOW_BUNDLE, WORKFLOW_INTERCEPTOR_MODULES],
    [WORKFLOW_BUNDLE_UNTRACED, UNTRACED_INTERCEPTOR_MODULES],
  ] as const) {
    const { code } = await bundleWorkflowCode({
      workflowsPath: WORKFLOWS_PATH,
      workflowInterceptorModules,
      logger: quietLogger,
    });
    writeFileSync(file, code);
    console.log(`workflow bundle: ${file} (${Math.round(code.length / 1024)} KiB)`);
  }
}

const noop = (): void => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: console.warn, error: console.error, log: noop };

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
