// The end of the interpreter's action switch (workflows/actions.ts, runAction). No imports: workflow
// code uses it, and test/fixtures/ compiles it on its own.

/**
 * Typed `never`, so a catalog action (src/contract/runbook/catalog.ts) that no case of the switch handles
 * fails to compile there, naming the action. At run time it is reached only by a runbook whose
 * action this build does not know (a newer client, input not made by load.ts): the step fails
 * saying so instead of passing as done without doing anything.
 */
export function unimplementedAction(action: never): never {
  throw new Error(
    `action "${String(action)}" has no implementation in this control worker (workflows/actions.ts); deploy a control worker that knows it, or remove the step`,
  );
}
