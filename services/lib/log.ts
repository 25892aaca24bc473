/**
 * Structured JSON logs (pino), one line per event on stdout. Every line carries the role, the
 * datacenter and the node; a line written inside a traced call also carries its trace and span
 * ids, so a log line leads to its trace in Jaeger and back.
 */
import { trace } from '@opentelemetry/api';
import pino, { DestinationStream, Logger } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  readonly role: string;
  readonly datacenter: string;
  readonly node: string;
  readonly level: string;
  /** Where lines go; stdout when omitted. Tests pass a stream to read them back. */
  readonly destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { role: options.role, dc: options.datacenter, node: options.node },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin() {
        const span = trace.getActiveSpan();
        if (span === undefined) return {};
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
