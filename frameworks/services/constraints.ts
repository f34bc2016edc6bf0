/**
 * Placement constraints (Marathon's operators), evaluated purely: may this offer take one more
 * instance of the app, given where its instances already are? Fields are `hostname` or an agent
 * attribute name; an agent lacking the attribute fails every operator except UNLIKE (Marathon).
 */
import type { Constraint } from './app-definition.ts';

/** Where something is or could be placed: an offer, or an instance's agent. */
export interface PlacementTarget {
  hostname: string;
  attributes: Readonly<Record<string, string>>;
}

export function fieldValue(target: PlacementTarget, field: string): string | undefined {
  return field === 'hostname' ? target.hostname : target.attributes[field];
}

/** The first constraint the offer would break with one more instance on it, or undefined if none. */
export function unmetConstraint(constraints: readonly Constraint[], offer: PlacementTarget, placed: readonly PlacementTarget[]): Constraint | undefined {
  return constraints.find((constraint) => !meets(constraint, offer, placed));
}

export function meetsConstraints(constraints: readonly Constraint[], offer: PlacementTarget, placed: readonly PlacementTarget[]): boolean {
  return unmetConstraint(constraints, offer, placed) === undefined;
}

function meets({ field, operator, value }: Constraint, offer: PlacementTarget, placed: readonly PlacementTarget[]): boolean {
  const here = fieldValue(offer, field);
  if (operator === 'UNLIKE') return here === undefined || !fullMatch(value!, here);
  if (here === undefined) return false;
  switch (operator) {
    case 'UNIQUE':
      return placed.every((p) => fieldValue(p, field) !== here);
    case 'CLUSTER': {
      // Without a value, the first instance picks the value the rest must share.
      const target = value ?? (placed.length > 0 ? fieldValue(placed[0]!, field) : here);
      return here === target;
    }
    case 'IS':
      return here === value;
    case 'LIKE':
      return fullMatch(value!, here);
    case 'MAX_PER':
      return countWith(placed, field, here) < Number(value);
    case 'GROUP_BY':
      return groupByAllows(field, value === undefined ? undefined : Number(value), here, placed);
  }
}

/**
 * GROUP_BY spreads instances evenly over the field's values: an offer is fine if its group holds no
 * more instances than the emptiest group. With an expected group count, groups not seen yet count
 * as empty, so the first instances wait for offers from new groups (Marathon's reading of the value).
 */
function groupByAllows(field: string, expectedGroups: number | undefined, here: string, placed: readonly PlacementTarget[]): boolean {
  const counts = new Map<string, number>();
  for (const p of placed) {
    const v = fieldValue(p, field);
    if (v !== undefined) counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  const seenEnoughGroups = expectedGroups === undefined || counts.size >= expectedGroups;
  const emptiest = seenEnoughGroups && counts.size > 0 ? Math.min(...counts.values()) : 0;
  return (counts.get(here) ?? 0) <= emptiest;
}

function countWith(placed: readonly PlacementTarget[], field: string, value: string): number {
  let n = 0;
  for (const p of placed) if (fieldValue(p, field) === value) n++;
  return n;
}

const regexCache = new Map<string, RegExp>();
/** Marathon uses Java's String.matches: the whole value must match. */
function fullMatch(pattern: string, value: string): boolean {
  let regex = regexCache.get(pattern);
  if (!regex) {
    regex = new RegExp(`^(?:${pattern})$`);
    regexCache.set(pattern, regex);
  }
  return regex.test(value);
}

/** How many of `placed` each host runs. */
export function instancesPerHost(placed: readonly PlacementTarget[]): Map<string, number> {
  const perHost = new Map<string, number>();
  for (const p of placed) perHost.set(p.hostname, (perHost.get(p.hostname) ?? 0) + 1);
  return perHost;
}

/**
 * The candidate to place the next instance on: among those meeting every constraint, the one whose
 * host runs the fewest instances of the app (the default spread; ties keep the candidates' order,
 * so a caller's own ranking — e.g. best resource fit — breaks them). A caller placing many
 * instances in a row passes `perHost` (instancesPerHost(placed), kept up to date) rather than
 * have it counted again for each.
 */
export function chooseOffer<T extends PlacementTarget>(
  constraints: readonly Constraint[],
  candidates: readonly T[],
  placed: readonly PlacementTarget[],
  perHost: ReadonlyMap<string, number> = instancesPerHost(placed),
): T | undefined {
  let best: T | undefined;
  let bestCount = Infinity;
  for (const candidate of candidates) {
    const count = perHost.get(candidate.hostname) ?? 0;
    if (count < bestCount && meetsConstraints(constraints, candidate, placed)) {
      best = candidate;
      bestCount = count;
    }
  }
  return best;
}
