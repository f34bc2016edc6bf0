/** Job specs from text (YAML or JSON) to a validated JobSpec, or one error naming every bad field. */
import { DefinitionSyntaxError, describeIssues, fieldNamesOf, parseDefinitionText, type DefinitionFormat, type FieldProblem } from '../sdk/definitions.ts';
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
  let data: unknown;
  try {
    data = parseDefinitionText(text, format);
  } catch (error) {
    if (error instanceof DefinitionSyntaxError) throw new JobSpecError([error.problem], source);
    throw error;
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
  throw new JobSpecError(describeIssues(result.error.issues, KNOWN_FIELDS), source);
}

const KNOWN_FIELDS = [...fieldNamesOf([jobObjectSchema, retriesSchema, scheduleSchema, containerSchema, containerSchema.shape.docker]), 'job', 'condition'];
