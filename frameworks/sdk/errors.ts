/**
 * The SDK's named errors. Each carries the context a caller needs to decide what to do, so code can
 * branch on `instanceof` and fields instead of parsing messages.
 */

export type DriverState = 'idle' | 'connecting' | 'subscribing' | 'subscribed' | 'stopped';

/** A call was made while the driver holds no subscribed connection (it is reconnecting, or stopped). */
export class NotConnectedError extends Error {
  override name = 'NotConnectedError';
  constructor(
    /** The call that could not be sent, e.g. "ACCEPT". */
    readonly call: string,
    readonly state: DriverState,
  ) {
    super(
      state === 'stopped'
        ? `cannot send ${call}: the scheduler driver is stopped`
        : `cannot send ${call}: the scheduler driver is not subscribed (it is reconnecting to the master); ` +
            'offers held before the disconnect are void, wait for the next `subscribed` or `offers` event',
    );
  }
}

/**
 * The master refused the scheduler: an ERROR answer to SUBSCRIBE, a fatal ERROR such as
 * FRAMEWORK_REMOVED, or the socket closed with 1008 (policy violation). The driver stops itself;
 * reconnecting would only be refused again.
 */
export class MasterRefusedError extends Error {
  override name = 'MasterRefusedError';
  constructor(
    /** The master's ErrorCode (e.g. "FRAMEWORK_REMOVED"), or "CLOSED_BY_MASTER" for a bare 1008 close. */
    readonly code: string,
    /** The master's own words. */
    readonly reason: string,
    readonly frameworkId: string | undefined,
  ) {
    super(`the master refused the scheduler${frameworkId ? ` of framework ${frameworkId}` : ''}: ${code}: ${reason}`);
  }
}

/** `start()` was pending when `stop()` was called. */
export class DriverStoppedError extends Error {
  override name = 'DriverStoppedError';
  constructor() {
    super('the scheduler driver was stopped before it subscribed');
  }
}

/** A call the SDK can tell is malformed before it leaves (the master would answer INVALID_MESSAGE). */
export class InvalidCallError extends Error {
  override name = 'InvalidCallError';
  constructor(
    readonly call: string,
    message: string,
  ) {
    super(message);
  }
}
