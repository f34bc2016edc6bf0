/** The wire contract: message types and schemas, resources, codec and connections. */
export * from './messages.ts';
export * from './resources.ts';
export * from './connection.ts';
export { DecodeError, typesOf } from './codec.ts';

import { typesOf } from './codec.ts';
import type { InboundSpec } from './connection.ts';
import {
  agentMessageSchema,
  masterToAgentSchema,
  schedulerCallSchema,
  schedulerEventSchema,
  type AgentMessage,
  type MasterToAgent,
  type SchedulerCall,
  type SchedulerEvent,
} from './messages.ts';

/** What each side of each endpoint accepts. */
export const Inbound = {
  /** The master reading a scheduler. */
  schedulerCalls: { schema: schedulerCallSchema, knownTypes: typesOf(schedulerCallSchema) } as InboundSpec<SchedulerCall>,
  /** A scheduler reading the master. */
  schedulerEvents: { schema: schedulerEventSchema, knownTypes: typesOf(schedulerEventSchema) } as InboundSpec<SchedulerEvent>,
  /** The master reading an agent. */
  agentMessages: { schema: agentMessageSchema, knownTypes: typesOf(agentMessageSchema) } as InboundSpec<AgentMessage>,
  /** An agent reading the master. */
  masterToAgent: { schema: masterToAgentSchema, knownTypes: typesOf(masterToAgentSchema) } as InboundSpec<MasterToAgent>,
};

/** WebSocket paths on the master. */
export const Endpoint = {
  scheduler: '/api/v1/scheduler',
  agent: '/api/v1/agent',
} as const;
