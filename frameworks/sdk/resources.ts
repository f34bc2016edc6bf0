/**
 * Offer matching: from "these tasks want to run" and "these offers are on the table" to launches.
 *
 * Pure functions over plain data, so a framework's placement can be unit-tested (and property
 * tested) without a master. The invariant every helper keeps: the tasks placed on an offer never
 * need more than the offer holds, and no two tasks get the same port.
 */
import {
  add,
  contains,
  normalize,
  normalizeRanges,
  rangeCount,
  rangesOf,
  scalar,
  subtract,
  type CommandInfo,
  type KillPolicy,
  type Offer,
  type Range,
  type Resources,
  type TaskInfo,
} from '../../master/protocol/index.ts';

export * from '../../master/protocol/resources.ts';

/**
 * The lowest `count` free ports of the offer's `ports` ranges.
 * Throws a RangeError when the offer holds fewer than `count` ports.
 */
export function pickPorts(offerResources: Resources, count: number): number[] {
  if (count <= 0) return [];
  const ranges = normalizeRanges(rangesOf(offerResources, 'ports'));
  const available = rangeCount(ranges);
  if (available < count) throw new RangeError(`needs ${count} port${count === 1 ? '' : 's'}, the offer holds ${available}`);
  const ports: number[] = [];
  for (const [begin, end] of ranges) {
    for (let port = begin; port <= end && ports.length < count; port++) ports.push(port);
    if (ports.length === count) break;
  }
  return ports;
}

/** The resources a list of ports occupies: `{ ports: [[p, p], ...] }` merged, or `{}` for none. */
export function portsResource(ports: readonly number[]): Resources {
  if (ports.length === 0) return {};
  return { ports: normalizeRanges(ports.map((port) => [port, port] as Range)) };
}

/** What a framework wants to run, before it knows where. */
export interface TaskSpec {
  taskId: string;
  name?: string;
  /** What the task needs, without dynamically picked ports (fixed `ports` ranges are allowed). */
  resources: Resources;
  /**
   * How many ports to pick from the offer. They are added to the task's resources and passed to the
   * command as PORT0, PORT1, ... and PORTS (comma-separated), as Marathon does. @default 0
   */
  portCount?: number;
  command: CommandInfo;
  killPolicy?: KillPolicy;
  labels?: Record<string, string>;
  /** Placement constraint: the task goes only on offers for which this returns true. */
  constraint?: (offer: Offer) => boolean;
}

/** Tasks to launch on one offer: `driver.launch(offer, tasks)`. */
export interface Launch {
  offer: Offer;
  tasks: TaskInfo[];
}

export interface Placement {
  /** One entry per offer that received at least one task, in offer order. */
  launches: Launch[];
  /** Specs no offer could hold, in their original order. */
  unplaced: TaskSpec[];
}

interface Bin {
  offer: Offer;
  remaining: Resources;
  tasks: TaskInfo[];
}

/** Places the task on the bin if it fits there, returning the TaskInfo; undefined if it does not. */
function tryPlace(bin: Bin, spec: TaskSpec): TaskInfo | undefined {
  if (spec.constraint && !spec.constraint(bin.offer)) return undefined;
  const wanted = normalize(spec.resources);
  if (!contains(bin.remaining, wanted)) return undefined;
  const portCount = spec.portCount ?? 0;
  // Pick dynamic ports from what is left after any fixed ports the task asked for.
  const afterFixed = subtract(bin.remaining, wanted);
  if (rangeCount(rangesOf(afterFixed, 'ports')) < portCount) return undefined;
  const ports = pickPorts(afterFixed, portCount);
  const resources = add(wanted, portsResource(ports));
  bin.remaining = subtract(bin.remaining, resources);
  const task: TaskInfo = { taskId: spec.taskId, resources, command: withPortEnvironment(spec.command, ports) };
  if (spec.name !== undefined) task.name = spec.name;
  if (spec.killPolicy !== undefined) task.killPolicy = spec.killPolicy;
  if (spec.labels !== undefined) task.labels = spec.labels;
  bin.tasks.push(task);
  return task;
}

function withPortEnvironment(command: CommandInfo, ports: readonly number[]): CommandInfo {
  if (ports.length === 0) return command;
  const environment: Record<string, string> = { ...command.environment };
  ports.forEach((port, i) => {
    environment[`PORT${i}`] = String(port);
  });
  environment.PORTS = ports.join(',');
  return { ...command, environment };
}

function binsOf(offers: readonly Offer[]): Bin[] {
  return offers.map((offer) => ({ offer, remaining: normalize(offer.resources), tasks: [] }));
}

function result(bins: readonly Bin[], unplaced: TaskSpec[]): Placement {
  return { launches: bins.filter((bin) => bin.tasks.length > 0).map((bin) => ({ offer: bin.offer, tasks: bin.tasks })), unplaced };
}

/** Each task, in order, goes on the first offer it fits. Fast and predictable; spreads little. */
export function firstFit(pending: readonly TaskSpec[], offers: readonly Offer[]): Placement {
  const bins = binsOf(offers);
  const unplaced: TaskSpec[] = [];
  for (const spec of pending) {
    if (!bins.some((bin) => tryPlace(bin, spec) !== undefined)) unplaced.push(spec);
  }
  return result(bins, unplaced);
}

/**
 * Packs tight: the largest tasks first, each on the fitting offer with the least room left, so
 * partly used agents fill up and whole agents stay free for big tasks (best-fit decreasing).
 * Room is measured over the scalar resources, each as a share of the total offered, so cpus and
 * mem weigh alike whatever their units.
 */
export function binPack(pending: readonly TaskSpec[], offers: readonly Offer[]): Placement {
  const bins = binsOf(offers);
  const totals: Record<string, number> = {};
  for (const bin of bins) {
    for (const [name, value] of Object.entries(bin.remaining)) {
      if (typeof value === 'number') totals[name] = (totals[name] ?? 0) + value;
    }
  }
  const size = (resources: Resources): number => {
    let sum = 0;
    for (const [name, total] of Object.entries(totals)) if (total > 0) sum += scalar(resources, name) / total;
    return sum;
  };
  const order = pending.map((spec, index) => ({ spec, index, size: size(spec.resources) }));
  order.sort((a, b) => b.size - a.size || a.index - b.index);
  const placed = new Set<number>();
  for (const { spec, index } of order) {
    const ranked = bins.map((bin, i) => ({ bin, i, room: size(bin.remaining) })).sort((a, b) => a.room - b.room || a.i - b.i);
    if (ranked.some(({ bin }) => tryPlace(bin, spec) !== undefined)) placed.add(index);
  }
  return result(
    bins,
    pending.filter((_, index) => !placed.has(index)),
  );
}
