/**
 * A timeout that may be longer than Node's limit. setTimeout treats any delay above 2^31−1 ms
 * (24.8 days) as 1 ms, and failover timeouts of weeks are normal (Marathon uses 7 days), so long
 * delays are covered by re-arming in steps.
 */
const MAX_DELAY_MS = 2 ** 31 - 1;

export interface Timer {
  clear(): void;
}

export function startTimer(delayMs: number, fire: () => void): Timer {
  const deadline = Date.now() + Math.max(0, delayMs);
  let handle: NodeJS.Timeout;
  const arm = () => {
    const remaining = deadline - Date.now();
    handle = setTimeout(remaining > MAX_DELAY_MS ? arm : fire, Math.min(Math.max(0, remaining), MAX_DELAY_MS));
    handle.unref();
  };
  arm();
  return { clear: () => clearTimeout(handle) };
}
