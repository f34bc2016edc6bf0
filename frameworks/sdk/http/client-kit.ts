/**
 * What the frameworks' API clients (services, batch) share: requests with a timeout, a failure to
 * connect told apart from an error status, and error answers read for the server's message,
 * per-field problems and code. Each client says which errors it throws.
 */

/** A JSON body, or text as written with its content type (a YAML definition). */
export type RequestBody = { json: unknown } | { text: string; contentType: string };

/** A field an API refused, as error answers list them in `problems`. */
export interface AnswerProblem {
  field: string;
  message: string;
}

export interface ApiTransportOptions {
  /** How long a request may take to answer. @default 10000 */
  timeoutMs?: number;
  /** The error for a request nothing answered, or whose answer broke off. */
  unreachable(cause: unknown): Error;
  /** The error for an error status: the server's `error` as the message (else what came back), its `problems` and `code`. */
  httpError(status: number, message: string, problems: AnswerProblem[], code: string | undefined): Error;
}

export class ApiTransport {
  /** Without a trailing slash. */
  readonly baseUrl: string;
  readonly timeoutMs: number;

  constructor(
    baseUrl: string,
    private readonly options: ApiTransportOptions,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** The answer, whatever its status; a request nothing answered within the timeout rejects with `unreachable`. */
  async send(method: string, path: string, body?: RequestBody): Promise<Response> {
    const init: RequestInit = { method, signal: AbortSignal.timeout(this.timeoutMs) };
    if (body && 'json' in body) {
      init.body = JSON.stringify(body.json);
      init.headers = { 'content-type': 'application/json' };
    } else if (body) {
      init.body = body.text;
      init.headers = { 'content-type': body.contentType };
    }
    try {
      return await fetch(`${this.baseUrl}${path}`, init);
    } catch (error) {
      throw this.options.unreachable(error);
    }
  }

  /** The parsed JSON answer (undefined for an empty one); an error status rejects with `httpError`. */
  async call<T>(method: string, path: string, body?: RequestBody): Promise<T> {
    return this.read<T>(await this.send(method, path, body), method, path);
  }

  /** As `call`, but a 404 (no such thing) is undefined. */
  async find<T>(method: string, path: string): Promise<T | undefined> {
    const res = await this.send(method, path);
    if (res.status === 404) {
      await res.arrayBuffer().catch(() => undefined);
      return undefined;
    }
    return this.read<T>(res, method, path);
  }

  private async read<T>(res: Response, method: string, path: string): Promise<T> {
    if (!res.ok) throw await this.errorOf(res, method, path);
    let text: string;
    try {
      text = await res.text();
    } catch (error) {
      throw this.options.unreachable(error);
    }
    try {
      return (text === '' ? undefined : JSON.parse(text)) as T;
    } catch {
      throw this.options.httpError(res.status, `${method} ${path} answered HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`, [], undefined);
    }
  }

  /** The `httpError` an error answer means. */
  async errorOf(res: Response, method: string, path: string): Promise<Error> {
    let text = '';
    try {
      text = await res.text();
    } catch {
      // the status says enough
    }
    let fields: { error?: unknown; problems?: unknown; code?: unknown } = {};
    try {
      fields = (text === '' ? {} : JSON.parse(text)) ?? {};
    } catch {
      // not JSON: quote it below
    }
    const message = typeof fields.error === 'string' ? fields.error : `${method} ${path} answered HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`;
    const problems = Array.isArray(fields.problems) ? (fields.problems as AnswerProblem[]) : [];
    return this.options.httpError(res.status, message, problems, typeof fields.code === 'string' ? fields.code : undefined);
  }
}

/** Why nothing answered, for a message: the socket's code (ECONNREFUSED), else the most specific message. */
export function unreachableReason(cause: unknown): string {
  const error = cause as { cause?: { code?: string; message?: string }; message?: string } | undefined;
  return error?.cause?.code ?? error?.cause?.message ?? error?.message ?? 'no answer';
}
