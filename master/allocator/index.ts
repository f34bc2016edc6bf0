/** The allocator's public face: what the master imports. See allocator.ts for the algorithm. */
export { Allocator, AllocatorError, UnknownAgentError, UnknownFrameworkError, type AllocatorOptions, type OfferDecision } from './allocator.ts';
export { MAX_REFUSE_SECONDS } from './filters.ts';
