// The layout's guard rails (eslint.config.mjs) refuse what they are for: Node built-ins and
// activity implementations in workflow code, library code in the contract, and imports against
// the layout's direction. Each rule is shown failing on a small source placed where it applies,
// and passing on the allowed form.
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
    for (const file of ['workflows/example.ts', 'src/contract/example.ts', 'src/contract/traffic/example.ts']) {
      expect(
        await problems(file, "import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n"),
        file,
      ).toEqual([expect.stringContaining('no Node built-ins')]);
    }
    expect(await problems('workflows/example.ts', "import { join } from 'path';\nexport const x = join;\n")).toEqual([
      expect.stringContaining('no Node built-ins'),
    ]);
  });

  it('lets workflow code import activity types, never their implementation', async () => {
    expect(
      await problems(
        'workflows/example.ts',
        "import type { RegionActivities } from '../src/contract/activities';\nexport type X = RegionActivities;\n",
      ),
    ).toEqual([]);
    expect(
      await problems(
        'workflows/example.ts',
        "import type { createRegionActivities } from '../activities';\nexport type X = typeof createRegionActivities;\n",
      ),
    ).toEqual([]);
    expect(
      await problems(
        'workflows/example.ts',
        "import { createRegionActivities } from '../activities';\nexport const x = createRegionActivities;\n",
      ),
    ).toEqual([expect.stringContaining('activity types only')]);
    expect(
      await problems(
        'workflows/example.ts',
        "import { Client } from '@temporalio/client';\nexport const x = Client;\n",
      ),
    ).toEqual([expect.stringContaining('@temporalio/workflow only')]);
  });

  it('keeps library code out of the contract, but lets it name library types', async () => {
    expect(
      await problems(
        'src/contract/example.ts',
        "import { loadConfig } from '../lib/config/load';\nexport const x = loadConfig;\n",
      ),
    ).toEqual([expect.stringContaining('library types only')]);
    expect(
      await problems(
        'src/contract/runbook/example.ts',
        "import type { Config } from '../../lib/config/schema';\nexport type X = Config;\n",
      ),
    ).toEqual([]);
  });

  it('runs imports one way: entry points, then presentation, then libraries and activities, then the contract', async () => {
    expect(
      await problems(
        'activities/example.ts',
        "import { stackUp } from '../src/stack/stack';\nexport const x = stackUp;\n",
      ),
    ).toEqual([expect.stringContaining('entry points')]);
    expect(
      await problems(
        'src/lib/runs/example.ts',
        "import { statusCommand } from '../../cli/status';\nexport const x = statusCommand;\n",
      ),
    ).toEqual([expect.stringContaining('entry points')]);
    expect(
      await problems(
        'src/contract/example.ts',
        "import { runIntake } from '../intake/service';\nexport const x = runIntake;\n",
      ),
    ).toEqual([expect.stringContaining('entry points')]);
    expect(
      await problems(
        'src/present/example.ts',
        "import { demoCommand } from '../cli/demo';\nexport const x = demoCommand;\n",
      ),
    ).toEqual([expect.stringContaining('entry points')]);
    expect(
      await problems(
        'src/lib/example.ts',
        "import { formatRecord } from '../present/run';\nexport const x = formatRecord;\n",
      ),
    ).toEqual([expect.stringContaining('presentation')]);
    expect(
      await problems(
        'workers/example.ts',
        "import { formatRecord } from '../src/present/run';\nexport const x = formatRecord;\n",
      ),
    ).toEqual([expect.stringContaining('presentation')]);
    // Entry points may import each other and everything else.
    expect(
      await problems(
        'src/demo/example.ts',
        "import { statusCommand } from '../cli/status';\nexport const x = statusCommand;\n",
      ),
    ).toEqual([]);
    expect(
      await problems(
        'src/slack/example.ts',
        "import { formatRecord } from '../present/run';\nexport const x = formatRecord;\n",
      ),
    ).toEqual([]);
  });
});
