/**
 * A scripted gossip agent for user events: what is fired is delivered to its watch at once, as a
 * real agent delivers its own events, each with the next Lamport time. `refuseWith` makes the
 * next fires fail as an agent's refusal; `deliverRaw` hands the watch any gossip event.
 */
import { UserEvent } from '../../gen/consulate/gossip/v1/membership';
import { GossipAnswerError, GossipClient, UserEventWatchListener } from '../gossip-client';

export interface LoopbackEvents {
  readonly gossip: Pick<GossipClient, 'fireEvent' | 'watchEvents'>;
  /** Every gossip event fired, in order. */
  readonly fired: UserEvent[];
  /** While set, a fire fails with this text (INVALID_ARGUMENT), as gossip refuses a large event. */
  refuseWith: string | undefined;
  deliverRaw(event: UserEvent): void;
}

export function loopbackEvents(): LoopbackEvents {
  let listener: UserEventWatchListener | undefined;
  let ltime = 10n;
  const state: LoopbackEvents = {
    fired: [],
    refuseWith: undefined,
    gossip: {
      fireEvent: async (name, payload) => {
        if (state.refuseWith !== undefined) throw new GossipAnswerError(3, state.refuseWith);
        const event = { name, payload: Buffer.from(payload), ltime: ltime++ };
        state.fired.push(event);
        listener?.onEvent(event);
        return event.ltime;
      },
      watchEvents: (watching) => {
        listener = watching;
        return { cancel: () => (listener = undefined) };
      },
    },
    deliverRaw: (event) => listener?.onEvent(event),
  };
  return state;
}
