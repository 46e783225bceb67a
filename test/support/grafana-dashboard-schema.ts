// A JSON schema for the Grafana dashboards regionshift ships (docs/grafana/), written from
// Grafana's dashboard JSON model (https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/):
// the fields Grafana needs to import one, with their types, and the panel grid it lays out on
// (24 columns). Grafana adds fields of its own; those are allowed, not checked.

const datasource = {
  type: 'object',
  required: ['type', 'uid'],
  properties: { type: { type: 'string', minLength: 1 }, uid: { type: 'string', minLength: 1 } },
} as const;

const target = {
  type: 'object',
  required: ['refId', 'expr'],
  properties: {
    refId: { type: 'string', pattern: '^[A-Z]$' },
    expr: { type: 'string', minLength: 1 },
    legendFormat: { type: 'string' },
    datasource,
    instant: { type: 'boolean' },
    range: { type: 'boolean' },
    format: { enum: ['time_series', 'table', 'heatmap'] },
  },
} as const;

const gridPos = {
  type: 'object',
  required: ['x', 'y', 'w', 'h'],
  additionalProperties: false,
  properties: {
    x: { type: 'integer', minimum: 0, maximum: 23 },
    y: { type: 'integer', minimum: 0 },
    w: { type: 'integer', minimum: 1, maximum: 24 },
    h: { type: 'integer', minimum: 1 },
  },
} as const;

const panel = {
  type: 'object',
  required: ['id', 'type', 'title', 'gridPos'],
  properties: {
    id: { type: 'integer', minimum: 1 },
    type: { enum: ['timeseries', 'stat', 'gauge', 'bargauge', 'table', 'heatmap', 'state-timeline', 'text', 'row'] },
    title: { type: 'string' },
    description: { type: 'string' },
    gridPos,
    datasource,
    targets: { type: 'array', items: target },
    fieldConfig: {
      type: 'object',
      required: ['defaults'],
      properties: {
        defaults: {
          type: 'object',
          properties: {
            unit: { type: 'string' },
            min: { type: 'number' },
            max: { type: 'number' },
            decimals: { type: 'integer' },
          },
        },
        overrides: { type: 'array' },
      },
    },
    options: { type: 'object' },
    collapsed: { type: 'boolean' },
  },
  // A row holds no queries; every other panel has at least one and a data source for them.
  if: { properties: { type: { const: 'row' } } },
  then: { not: { required: ['targets'] } },
  else: {
    if: { properties: { type: { const: 'text' } } },
    then: {},
    else: { required: ['targets', 'datasource'], properties: { targets: { minItems: 1 } } },
  },
} as const;

const templateVariable = {
  type: 'object',
  required: ['name', 'type'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
    type: { enum: ['query', 'datasource', 'custom', 'constant', 'interval', 'textbox', 'adhoc'] },
    label: { type: 'string' },
    query: {},
    datasource: { oneOf: [datasource, { type: 'string' }, { type: 'null' }] },
    multi: { type: 'boolean' },
    includeAll: { type: 'boolean' },
    refresh: { enum: [0, 1, 2] },
  },
} as const;

export const GRAFANA_DASHBOARD_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'Grafana dashboard (JSON model, schemaVersion 36 and later)',
  type: 'object',
  required: ['title', 'uid', 'schemaVersion', 'panels', 'time'],
  properties: {
    id: { type: ['integer', 'null'] },
    uid: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,40}$' },
    title: { type: 'string', minLength: 1 },
    description: { type: 'string' },
    tags: { type: 'array', items: { type: 'string' } },
    timezone: { type: 'string' },
    editable: { type: 'boolean' },
    graphTooltip: { enum: [0, 1, 2] },
    schemaVersion: { type: 'integer', minimum: 36 },
    version: { type: 'integer', minimum: 0 },
    refresh: { type: 'string' },
    time: {
      type: 'object',
      required: ['from', 'to'],
      properties: { from: { type: 'string' }, to: { type: 'string' } },
    },
    templating: {
      type: 'object',
      required: ['list'],
      properties: { list: { type: 'array', items: templateVariable } },
    },
    annotations: { type: 'object', properties: { list: { type: 'array' } } },
    panels: { type: 'array', minItems: 1, items: panel },
    __inputs: { type: 'array' },
    __requires: { type: 'array' },
  },
} as const;
