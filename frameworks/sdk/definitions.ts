/**
 * Reading a framework's definitions (apps, jobs) from YAML or JSON with errors that name the field:
 * `upgradeStrategy.minimumHealthCapacity: must be between 0 and 1`, `retries.backofSeconds: unknown
 * field; did you mean backoffSeconds?`. Shared by the services and batch frameworks.
 */
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';

export interface FieldProblem {
  /** `upgradeStrategy.minimumHealthCapacity`, `constraints[0][1]`, or '' for the document itself. */
  field: string;
  message: string;
}

export type DefinitionFormat = 'yaml' | 'json';

/** The text is not valid YAML or JSON; `problem` says where. */
export class DefinitionSyntaxError extends Error {
  override name = 'DefinitionSyntaxError';
  constructor(readonly problem: FieldProblem) {
    super(problem.message);
  }
}

/** Without `format`, text starting with `{` is JSON and anything else YAML. */
export function parseDefinitionText(text: string, format?: DefinitionFormat): unknown {
  const chosen = format ?? (text.trimStart().startsWith('{') ? 'json' : 'yaml');
  try {
    return chosen === 'json' ? (JSON.parse(text) as unknown) : (parseYaml(text) as unknown);
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const at = error.linePos?.[0];
      const firstLine = error.message.split('\n')[0] ?? error.message;
      throw new DefinitionSyntaxError({ field: '', message: `is not valid YAML${at ? ` (line ${at.line}, column ${at.col})` : ''}: ${firstLine}` });
    }
    throw new DefinitionSyntaxError({ field: '', message: `is not valid ${chosen.toUpperCase()}: ${(error as Error).message}` });
  }
}

/** The field names of object schemas, for "did you mean …?" hints. */
export function fieldNamesOf(schemas: readonly object[]): string[] {
  return schemas.flatMap((schema) => Object.keys('shape' in schema ? (schema.shape as object) : {}));
}

/** Turns zod issues into field-named problems; unknown fields get the closest known name as a hint. */
export function describeIssues(issues: readonly z.core.$ZodIssue[], knownFields: Iterable<string>): FieldProblem[] {
  const known = [...new Set(knownFields)];
  return issues.flatMap((issue) => describeIssue(issue, known));
}

function describeIssue(issue: z.core.$ZodIssue, known: readonly string[]): FieldProblem[] {
  const field = fieldOf(issue.path);
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const suggestion = closestField(key, known);
      return { field: fieldOf([...issue.path, key]), message: `unknown field${suggestion ? `; did you mean ${suggestion}?` : '; remove it'}` };
    });
  }
  if (issue.code === 'invalid_type') {
    const received = /received (\w+)/.exec(issue.message)?.[1];
    if (received === 'undefined' || issue.message === 'is required') return [{ field, message: 'is required' }];
    // A schema's own wording ("must be a string (quote numbers)") says more than the generic one.
    if (issue.message.startsWith('must ')) return [{ field, message: issue.message }];
    return [{ field, message: `must be ${article(issue.expected)}${received ? `, got ${article(received)}` : ''}` }];
  }
  return [{ field, message: issue.message }];
}

function fieldOf(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

/** The known field a typo most likely meant (case-insensitive, at most two edits away). */
function closestField(key: string, known: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
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
