import { EventEmitter } from 'node:events';

import { abortSignalOf, callCancellation } from './cancellation';

/** A server call as grpc-js makes one: `cancelled` is set, then 'cancelled' is emitted. */
class FakeCall extends EventEmitter {
  cancelled = false;

  cancel(): void {
    this.cancelled = true;
    this.emit('cancelled', 'cancelled');
  }
}

describe('callCancellation', () => {
  test('reads the call: not aborted, then aborted once the call is cancelled, and its listeners hear it once', () => {
    const call = new FakeCall();
    const cancellation = callCancellation(call);
    const heard: string[] = [];
    cancellation.addEventListener('abort', () => heard.push('first'), { once: true });
    cancellation.addEventListener('abort', () => heard.push('second'), { once: true });
    expect(cancellation.aborted).toBe(false);
    call.cancel();
    expect(cancellation.aborted).toBe(true);
    call.cancel();
    expect(heard).toEqual(['first', 'second']);
  });

  test('a listener removed is not called, and leaves nothing on the call', () => {
    const call = new FakeCall();
    const cancellation = callCancellation(call);
    const listener = jest.fn();
    cancellation.addEventListener('abort', listener, { once: true });
    cancellation.removeEventListener('abort', listener);
    expect(call.listenerCount('cancelled')).toBe(0);
    call.cancel();
    expect(listener).not.toHaveBeenCalled();
  });
});

describe('abortSignalOf', () => {
  test('an AbortSignal is used as it is', () => {
    const controller = new AbortController();
    expect(abortSignalOf(controller.signal).signal).toBe(controller.signal);
  });

  test("follows a call's cancellation: aborts when the call is cancelled", () => {
    const call = new FakeCall();
    const { signal } = abortSignalOf(callCancellation(call));
    expect(signal.aborted).toBe(false);
    call.cancel();
    expect(signal.aborted).toBe(true);
  });

  test('is aborted at once for a call already cancelled', () => {
    const call = new FakeCall();
    call.cancel();
    expect(abortSignalOf(callCancellation(call)).signal.aborted).toBe(true);
  });

  test('release stops following: a later cancel leaves the signal as it was, and nothing on the call', () => {
    const call = new FakeCall();
    const { signal, release } = abortSignalOf(callCancellation(call));
    release();
    expect(call.listenerCount('cancelled')).toBe(0);
    call.cancel();
    expect(signal.aborted).toBe(false);
  });
});
