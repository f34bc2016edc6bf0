/** Job specs from text (YAML or JSON) to a validated JobSpec, or one error naming every bad field. */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import type { DefinitionFormat, FieldProblem } from '../services/parse-app-definition.ts';
import { containerSchema } from '../services/app-definition.ts';
import { jobObjectSchema, jobSpecSchema, retriesSchema, scheduleSchema, type JobSpec } from './job-spec.ts';

export type { DefinitionFormat, FieldProblem };

export class JobSpecError extends Error {
  override name = 'JobSpecError';
  constructor(
    readonly problems: readonly FieldProblem[],
    /** Where the spec came from, e.g. a file name, for the message. */
    readonly source?: string,
  ) {
    super(`invalid job spec${source ? ` in ${source}` : ''}:\n` + problems.map((p) => `  ${p.field ? `${p.field}: ` : ''}${p.message}`).join('\n'));
  }
}

/**
 * Parses and validates a job spec. Without `format`, text starting with `{` is JSON and anything
 * else YAML. Throws JobSpecError listing every problem found.
 */
export function parseJobSpec(text: string, format?: DefinitionFormat, source?: string): JobSpec {
  const chosen = format ?? (text.trimStart().startsWith('{') ? 'json' : 'yaml');
  let data: unknown;
  try {
    data = chosen === 'json' ? (JSON.parse(text) as unknown) : (parseYaml(text) as unknown);
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const at = error.linePos?.[0];
      const firstLine = error.message.split('\n')[0] ?? error.message;
      throw new JobSpecError([{ field: '', message: `is not valid YAML${at ? ` (line ${at.line}, column ${at.col})` : ''}: ${firstLine}` }], source);
    }
    throw new JobSpecError([{ field: '', message: `is not valid ${chosen.toUpperCase()}: ${(error as Error).message}` }], source);
  }
  return validateJobSpec(data, source);
}

/** Validates already-parsed data (an HTTP body). */
export function validateJobSpec(data: unknown, source?: string): JobSpec {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new JobSpecError([{ field: '', message: 'must be an object with at least `id` and `cmd` or `args`' }], source);
  }
  const result = jobSpecSchema.safeParse(data);
  if (result.success) return result.data;
  throw new JobSpecError(result.error.issues.flatMap(describeIssue), source);
}

function fieldOf(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

function describeIssue(issue: z.core.$ZodIssue): FieldProblem[] {
  const field = fieldOf(issue.path);
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const suggestion = closestField(key);
      return { field: fieldOf([...issue.path, key]), message: `unknown field${suggestion ? `; did you mean ${suggestion}?` : '; remove it'}` };
    });
  }
  if (issue.code === 'invalid_type') {
    const received = /received (\w+)/.exec(issue.message)?.[1];
    if (received === 'undefined') return [{ field, message: 'is required' }];
    if (issue.message.startsWith('must ')) return [{ field, message: issue.message }];
    return [{ field, message: `must be ${article(issue.expected)}${received ? `, got ${article(received)}` : ''}` }];
  }
  return [{ field, message: issue.message }];
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

const KNOWN_FIELDS = new Set(
  [jobObjectSchema, retriesSchema, scheduleSchema, containerSchema, containerSchema.shape.docker].flatMap((schema) =>
    Object.keys('shape' in schema ? schema.shape : {}),
  ).concat(['job', 'condition']),
);

/** The known field a typo most likely meant (case-insensitive, at most two edits away). */
function closestField(key: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of KNOWN_FIELDS) {
    const distance = editDistance(name.toLowerCase(), key.toLowerCase());
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}
