// Parsing the bench's list flags and choosing its sections: kept apart from main.ts so the
// refusals (an unknown name, --only naming a section that is off) have tests of their own.

/** A comma-separated subset of `known`; a name outside it, or nothing at all, is refused by name. */
export function nameList(value: string | undefined, flag: string, known: string[]): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  const unknown = items.filter((i) => !known.includes(i));
  if (items.length === 0) throw new Error(`--${flag} needs at least one of: ${known.join(', ')}`);
  if (unknown.length)
    throw new Error(
      `--${flag}: no such name ${unknown.map((u) => `"${u}"`).join(', ')}; choose from ${known.join(', ')}`,
    );
  return items;
}

/**
 * The sections to run: every default one plus the optional ones switched on by their own flag
 * (named like the section), narrowed by --only. An optional section named in --only without its
 * flag is refused: --only never switches on something that installs packages.
 */
export function chooseSections<S extends { name: string }>(
  defaults: S[],
  optional: S[],
  switchedOn: string[],
  only: string[] | undefined,
): S[] {
  const off = optional.filter((s) => !switchedOn.includes(s.name)).map((s) => s.name);
  const refused = (only ?? []).filter((n) => off.includes(n));
  if (refused.length)
    throw new Error(
      `--only ${refused.join(',')} needs ${refused.map((n) => `--${n}`).join(' ')} too (off by default: it installs packages)`,
    );
  const all = [...defaults, ...optional.filter((s) => switchedOn.includes(s.name))];
  return only ? all.filter((s) => only.includes(s.name)) : all;
}
