/** App definitions from text (YAML or JSON) to a validated AppDefinition, or one error naming every bad field. */
import { DefinitionSyntaxError, describeIssues, fieldNamesOf, parseDefinitionText, type DefinitionFormat, type FieldProblem } from '../sdk/definitions.ts';
import {
  appDefinitionSchema,
  appObjectSchema,
  backoffSchema,
  containerSchema,
  healthCheckSchema,
  portDefinitionSchema,
  portMappingSchema,
  readinessCheckSchema,
  upgradeStrategySchema,
  type AppDefinition,
} from './app-definition.ts';

export type { DefinitionFormat, FieldProblem };

export class AppDefinitionError extends Error {
  override name = 'AppDefinitionError';
  constructor(
    readonly problems: readonly FieldProblem[],
    /** Where the definition came from, e.g. a file name, for the message. */
    readonly source?: string,
  ) {
    super(
      `invalid app definition${source ? ` in ${source}` : ''}:\n` +
        problems.map((p) => `  ${p.field ? `${p.field}: ` : ''}${p.message}`).join('\n'),
    );
  }
}

/**
 * Parses and validates an app definition. Without `format`, text starting with `{` is JSON and
 * anything else YAML. Throws AppDefinitionError listing every problem found.
 */
export function parseAppDefinition(text: string, format?: DefinitionFormat, source?: string): AppDefinition {
  let data: unknown;
  try {
    data = parseDefinitionText(text, format);
  } catch (error) {
    if (error instanceof DefinitionSyntaxError) throw new AppDefinitionError([error.problem], source);
    throw error;
  }
  return validateAppDefinition(data, source);
}

/** Validates already-parsed data (an HTTP body). */
export function validateAppDefinition(data: unknown, source?: string): AppDefinition {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new AppDefinitionError([{ field: '', message: 'must be an object with at least `id` and `cmd` or `args`' }], source);
  }
  const result = appDefinitionSchema.safeParse(data);
  if (result.success) return result.data;
  throw new AppDefinitionError(describeIssues(result.error.issues, KNOWN_FIELDS), source);
}

const KNOWN_FIELDS = fieldNamesOf([
  appObjectSchema,
  upgradeStrategySchema,
  backoffSchema,
  containerSchema,
  containerSchema.shape.docker,
  healthCheckSchema,
  readinessCheckSchema,
  portDefinitionSchema,
  portMappingSchema,
]);
