/**
 * Resources: the currency of the whole system.
 *
 * A resource set is a plain object keyed by resource name. A value is one of
 *  - a scalar (`cpus: 1.5`, `mem: 1024`), kept to three decimal places like Mesos' fixed-point
 *    scalars, so repeated add/subtract never drifts;
 *  - ranges of integers (`ports: [[31000, 31010]]`), inclusive at both ends, kept sorted and merged;
 *  - a set of strings (`zones: ['a', 'b']`), kept sorted and unique.
 * An empty value (0, no ranges, empty set) is the same as an absent key; `normalize` drops it.
 *
 * Everything here is pure and allocation-light: the allocator calls these on every cycle.
 */

export type Range = [begin: number, end: number];
export type ResourceValue = number | Range[] | string[];
export type Resources = Record<string, ResourceValue>;

export class ResourceParseError extends Error {
  override name = 'ResourceParseError';
  constructor(
    message: string,
    readonly input: string,
  ) {
    super(message);
  }
}

const SCALE = 1000;
/** Rounds a scalar to Mesos' fixed-point precision (three decimal places). */
export function roundScalar(value: number): number {
  return Math.round(value * SCALE) / SCALE;
}

export function isRanges(value: ResourceValue): value is Range[] {
  return Array.isArray(value) && value.length > 0 && Array.isArray(value[0]);
}

export function isSet(value: ResourceValue): value is string[] {
  return Array.isArray(value) && (value.length === 0 || typeof value[0] === 'string');
}

function isEmptyValue(value: ResourceValue): boolean {
  return typeof value === 'number' ? value <= 0 : value.length === 0;
}

export function isEmpty(resources: Resources): boolean {
  for (const key in resources) {
    if (!isEmptyValue(resources[key]!)) return false;
  }
  return true;
}

/** Sorts and merges ranges; overlapping and adjacent ranges become one. */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  if (ranges.length <= 1) return ranges.map(([b, e]) => [b, e] as Range);
  const sorted = ranges.map(([b, e]) => [b, e] as Range).sort((x, y) => x[0] - y[0]);
  const out: Range[] = [sorted[0]!];
  for (let i = 1; i < sorted.length; i++) {
    const last = out[out.length - 1]!;
    const next = sorted[i]!;
    if (next[0] <= last[1] + 1) last[1] = Math.max(last[1], next[1]);
    else out.push(next);
  }
  return out;
}

/** Returns a copy with empty values dropped, scalars rounded, ranges merged and sets sorted. */
export function normalize(resources: Resources): Resources {
  const out: Resources = {};
  for (const key in resources) {
    const value = resources[key]!;
    if (typeof value === 'number') {
      const rounded = roundScalar(value);
      if (rounded > 0) out[key] = rounded;
    } else if (isRanges(value)) {
      out[key] = normalizeRanges(value);
    } else if (value.length > 0) {
      out[key] = [...new Set(value)].sort();
    }
  }
  return out;
}

export function scalar(resources: Resources, name: string): number {
  const value = resources[name];
  return typeof value === 'number' ? value : 0;
}

export function rangesOf(resources: Resources, name: string): Range[] {
  const value = resources[name];
  return value !== undefined && isRanges(value) ? value : [];
}

export function rangeCount(ranges: readonly Range[]): number {
  let n = 0;
  for (const [b, e] of ranges) n += e - b + 1;
  return n;
}

function addRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  return normalizeRanges([...a, ...b]);
}

function subtractRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  let out: Range[] = a.map(([x, y]) => [x, y] as Range);
  for (const [rb, re] of b) {
    const next: Range[] = [];
    for (const [xb, xe] of out) {
      if (re < xb || rb > xe) {
        next.push([xb, xe]);
        continue;
      }
      if (rb > xb) next.push([xb, rb - 1]);
      if (re < xe) next.push([re + 1, xe]);
    }
    out = next;
  }
  return out;
}

function rangesContain(outer: readonly Range[], inner: readonly Range[]): boolean {
  for (const [ib, ie] of inner) {
    let covered = false;
    for (const [ob, oe] of outer) {
      if (ib >= ob && ie <= oe) {
        covered = true;
        break;
      }
    }
    if (!covered) return false;
  }
  return true;
}

function kindOf(value: ResourceValue): 'scalar' | 'ranges' | 'set' {
  if (typeof value === 'number') return 'scalar';
  return isRanges(value) ? 'ranges' : 'set';
}

/** a + b. Values of mismatched kinds under one name are a programming error and throw. */
export function add(a: Resources, b: Resources): Resources {
  const out: Resources = { ...a };
  for (const key in b) {
    const bv = b[key]!;
    const av = out[key];
    if (av === undefined || isEmptyValue(av)) {
      if (!isEmptyValue(bv)) out[key] = typeof bv === 'number' ? roundScalar(bv) : bv.slice() as ResourceValue;
      continue;
    }
    if (isEmptyValue(bv)) continue;
    out[key] = combine(key, av, bv, 'add');
  }
  return out;
}

/** a − b, dropping what becomes empty. Subtracting more than a holds leaves nothing (never negative). */
export function subtract(a: Resources, b: Resources): Resources {
  const out: Resources = { ...a };
  for (const key in b) {
    const av = out[key];
    const bv = b[key]!;
    if (av === undefined || isEmptyValue(bv)) continue;
    const result = combine(key, av, bv, 'subtract');
    if (isEmptyValue(result)) delete out[key];
    else out[key] = result;
  }
  return out;
}

function combine(key: string, av: ResourceValue, bv: ResourceValue, op: 'add' | 'subtract'): ResourceValue {
  const kind = kindOf(av);
  if (kind !== kindOf(bv)) throw new TypeError(`resource "${key}" is a ${kind} in one set and a ${kindOf(bv)} in the other`);
  if (typeof av === 'number') {
    const n = op === 'add' ? av + (bv as number) : av - (bv as number);
    return Math.max(0, roundScalar(n));
  }
  if (kind === 'ranges') {
    return op === 'add' ? addRanges(av as Range[], bv as Range[]) : subtractRanges(av as Range[], bv as Range[]);
  }
  const set = new Set(av as string[]);
  for (const item of bv as string[]) {
    if (op === 'add') set.add(item);
    else set.delete(item);
  }
  return [...set].sort();
}

/** True when `outer` holds at least everything in `inner`. */
export function contains(outer: Resources, inner: Resources): boolean {
  for (const key in inner) {
    const iv = inner[key]!;
    if (isEmptyValue(iv)) continue;
    const ov = outer[key];
    if (ov === undefined || isEmptyValue(ov) || kindOf(ov) !== kindOf(iv)) return false;
    if (typeof iv === 'number') {
      if ((ov as number) + 1e-9 < iv) return false;
    } else if (kindOf(iv) === 'ranges') {
      if (!rangesContain(ov as Range[], iv as Range[])) return false;
    } else {
      const set = new Set(ov as string[]);
      for (const item of iv as string[]) if (!set.has(item)) return false;
    }
  }
  return true;
}

export function equals(a: Resources, b: Resources): boolean {
  return contains(a, b) && contains(b, a);
}

/**
 * Describes what `inner` needs beyond `outer`, for error messages a person can act on:
 * "cpus: needs 2, offer has 1; ports: 8080 not offered".
 */
export function shortfall(outer: Resources, inner: Resources): string {
  const parts: string[] = [];
  for (const key in inner) {
    const iv = inner[key]!;
    if (isEmptyValue(iv)) continue;
    const ov = outer[key];
    if (typeof iv === 'number') {
      const have = typeof ov === 'number' ? ov : 0;
      if (have + 1e-9 < iv) parts.push(`${key}: needs ${iv}, has ${have}`);
    } else if (ov === undefined || !contains({ [key]: ov }, { [key]: iv })) {
      parts.push(`${key}: needs ${formatValue(iv)}, has ${ov === undefined ? 'none' : formatValue(ov)}`);
    }
  }
  return parts.join('; ');
}

function formatValue(value: ResourceValue): string {
  if (typeof value === 'number') return String(value);
  if (isRanges(value)) return `[${value.map(([b, e]) => (b === e ? `${b}` : `${b}-${e}`)).join(',')}]`;
  return `{${value.join(',')}}`;
}

/** Formats as the text form `parseResources` reads: `cpus:1;mem:128;ports:[31000-31010]`. */
export function formatResources(resources: Resources): string {
  return Object.keys(resources)
    .filter((key) => !isEmptyValue(resources[key]!))
    .map((key) => `${key}:${formatValue(resources[key]!)}`)
    .join(';');
}

const NAME = /^[a-zA-Z_][a-zA-Z0-9_.-]*$/;

/**
 * Parses the text form used on command lines: `cpus:4;mem:8192;ports:[31000-32000,8080];zones:{a,b}`.
 * Throws ResourceParseError naming the part that is wrong.
 */
export function parseResources(text: string): Resources {
  const out: Resources = {};
  for (const rawPart of text.split(';')) {
    const part = rawPart.trim();
    if (part === '') continue;
    const colon = part.indexOf(':');
    if (colon <= 0) throw new ResourceParseError(`"${part}" is not NAME:VALUE (example: cpus:2;mem:1024;ports:[31000-32000])`, text);
    const name = part.slice(0, colon).trim();
    const raw = part.slice(colon + 1).trim();
    if (!NAME.test(name)) throw new ResourceParseError(`"${name}" is not a valid resource name`, text);
    if (name in out) throw new ResourceParseError(`resource "${name}" is given twice`, text);
    if (raw.startsWith('[')) out[name] = parseRanges(name, raw, text);
    else if (raw.startsWith('{')) out[name] = parseSet(name, raw, text);
    else {
      const value = Number(raw);
      if (raw === '' || !Number.isFinite(value) || value < 0) {
        throw new ResourceParseError(`"${name}:${raw}": expected a non-negative number`, text);
      }
      out[name] = roundScalar(value);
    }
  }
  return normalize(out);
}

function parseRanges(name: string, raw: string, text: string): Range[] {
  if (!raw.endsWith(']')) throw new ResourceParseError(`"${name}:${raw}": ranges must be closed with ]`, text);
  const body = raw.slice(1, -1).trim();
  if (body === '') return [];
  const ranges: Range[] = [];
  for (const item of body.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(item);
    if (!m) throw new ResourceParseError(`"${name}": "${item.trim()}" is not a range like 31000-32000 or a single number`, text);
    const begin = Number(m[1]);
    const end = m[2] === undefined ? begin : Number(m[2]);
    if (end < begin) throw new ResourceParseError(`"${name}": range ${begin}-${end} ends before it begins`, text);
    ranges.push([begin, end]);
  }
  return normalizeRanges(ranges);
}

function parseSet(name: string, raw: string, text: string): string[] {
  if (!raw.endsWith('}')) throw new ResourceParseError(`"${name}:${raw}": sets must be closed with }`, text);
  const body = raw.slice(1, -1).trim();
  if (body === '') return [];
  return body.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** Parses agent attributes: `rack:r1;zone:a` → `{ rack: 'r1', zone: 'a' }`. */
export function parseAttributes(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rawPart of text.split(';')) {
    const part = rawPart.trim();
    if (part === '') continue;
    const colon = part.indexOf(':');
    if (colon <= 0) throw new ResourceParseError(`attribute "${part}" is not NAME:VALUE (example: rack:r1;zone:a)`, text);
    const name = part.slice(0, colon).trim();
    if (!NAME.test(name)) throw new ResourceParseError(`"${name}" is not a valid attribute name`, text);
    out[name] = part.slice(colon + 1).trim();
  }
  return out;
}
