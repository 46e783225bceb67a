import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

// Registered on the server by `regionshift stack up` (and docker-compose's setup job); every run
// sets them so runs can be listed by service, region, mode or step in the Temporal UI.
export const SA = {
  service: defineSearchAttributeKey('RegionshiftService', SearchAttributeType.KEYWORD),
  source: defineSearchAttributeKey('RegionshiftSource', SearchAttributeType.KEYWORD),
  target: defineSearchAttributeKey('RegionshiftTarget', SearchAttributeType.KEYWORD),
  mode: defineSearchAttributeKey('RegionshiftMode', SearchAttributeType.KEYWORD),
  step: defineSearchAttributeKey('RegionshiftStep', SearchAttributeType.KEYWORD),
  trigger: defineSearchAttributeKey('RegionshiftTrigger', SearchAttributeType.KEYWORD),
};

export const SEARCH_ATTRIBUTE_NAMES = Object.values(SA).map((k) => k.name);
