// {{name}} templates in step parameters (http.call's url, headers, body), filled from the run's
// values. No imports: workflow code renders them, so what was sent is in the run's history and
// nothing but the run's own values can appear in it (secrets come from the worker's environment).

export type TemplateValues = Record<string, string>;

export function renderTemplate(text: string, values: TemplateValues): string {
  return text.replace(/\{\{\s*([^}]*?)\s*\}\}/g, (_, name: string) => values[name] ?? '');
}

/** Renders every string inside a JSON value. */
export function renderJson(value: unknown, values: TemplateValues): unknown {
  if (typeof value === 'string') return renderTemplate(value, values);
  if (Array.isArray(value)) return value.map((v) => renderJson(v, values));
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, renderJson(v, values)]));
  return value;
}
