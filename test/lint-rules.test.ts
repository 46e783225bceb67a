// The layout's guard rails (eslint.config.mjs) refuse what they are for: Node built-ins and
// activity implementations in workflow code, and imports from an entry point below it. Each rule
// is shown failing on a small source placed where it applies, and passing on the allowed form.
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/stack-env';

const eslint = new ESLint({ cwd: REPO });

async function problems(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: `${REPO}/${filePath}` });
  return (result?.messages ?? []).map((m) => `${m.ruleId}: ${m.message}`);
}

describe('eslint.config.mjs', () => {
  it('refuses Node built-ins in workflow code and in what it imports', async () => {
    for (const file of ['workflows/example.ts', 'src/runbook/example.ts', 'src/traffic/example.ts']) {
      expect(await problems(file, "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n"), file).toEqual([
        expect.stringContaining('no Node built-ins'),
      ]);
    }
    expect(await problems('workflows/example.ts', "import { join } from 'path';\nexport const x = join;\n")).toEqual([expect.stringContaining('no Node built-ins')]);
  });

  it('lets workflow code import activity types, never their implementation', async () => {
    expect(await problems('workflows/example.ts', "import type { RegionActivities } from '../activities/types';\nexport type X = RegionActivities;\n")).toEqual([]);
    expect(await problems('workflows/example.ts', "import type { createRegionActivities } from '../activities';\nexport type X = typeof createRegionActivities;\n")).toEqual([]);
    expect(await problems('workflows/example.ts', "import { createRegionActivities } from '../activities';\nexport const x = createRegionActivities;\n")).toEqual([
      expect.stringContaining('activity types only'),
    ]);
    expect(await problems('workflows/example.ts', "import { Client } from '@temporalio/client';\nexport const x = Client;\n")).toEqual([
      expect.stringContaining('@temporalio/workflow only'),
    ]);
  });

  it('refuses imports from an entry point below it', async () => {
    expect(await problems('activities/example.ts', "import { stackUp } from '../src/stack/stack';\nexport const x = stackUp;\n")).toEqual([expect.stringContaining('entry points')]);
    expect(await problems('src/runs/example.ts', "import { formatRecord } from '../cli/report';\nexport const x = formatRecord;\n")).toEqual([expect.stringContaining('entry points')]);
    // Entry points may import each other and everything else.
    expect(await problems('src/demo/example.ts', "import { formatRecord } from '../cli/report';\nexport const x = formatRecord;\n")).toEqual([]);
  });
});
