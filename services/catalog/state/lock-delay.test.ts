// Consul's lock-delay (state/delay.go): a key released by an ended session cannot be acquired for
// the session's LockDelay, at most structs.MaxLockDelay (60 s).
import { LockDelays, MAX_DELAYED_KEYS, MAX_LOCK_DELAY_MS } from './lock-delay';

let now = 0;
const delays = () => new LockDelays({ monotonicMs: () => now });

beforeEach(() => {
  now = 1_000;
});

test('a delay holds until it passes, then is forgotten', () => {
  const lockDelays = delays();
  lockDelays.delay('k', 15_000);
  expect(lockDelays.isDelayed('k')).toBe(true);
  expect(lockDelays.isDelayed('other')).toBe(false);
  now += 15_000;
  expect(lockDelays.isDelayed('k')).toBe(false);
  expect(lockDelays.size).toBe(0);
});

test('capped at 60 s; zero delays nothing; a shorter delay never cuts a longer one', () => {
  const lockDelays = delays();
  lockDelays.delay('k', 10 * 60_000);
  now += MAX_LOCK_DELAY_MS;
  expect(lockDelays.isDelayed('k')).toBe(false);
  lockDelays.delay('z', 0);
  expect(lockDelays.isDelayed('z')).toBe(false);
  lockDelays.delay('k', 30_000);
  lockDelays.delay('k', 1_000);
  now += 20_000;
  expect(lockDelays.isDelayed('k')).toBe(true);
});

test('bounded: past the limit the delays ending soonest go first', () => {
  const lockDelays = delays();
  for (let i = 0; i <= MAX_DELAYED_KEYS; i++) lockDelays.delay(`k${i}`, 1_000 + i);
  expect(lockDelays.size).toBe(MAX_DELAYED_KEYS);
  expect(lockDelays.isDelayed('k0')).toBe(false);
  expect(lockDelays.isDelayed(`k${MAX_DELAYED_KEYS}`)).toBe(true);
});
