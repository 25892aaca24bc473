/**
 * A test OTLP/HTTP receiver: accepts `POST /v1/traces` with JSON bodies (what role processes send
 * with OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json) and keeps every span with its resource's
 * service.name. The same shape as Jaeger's OTLP endpoint, small enough to assert against.
 */
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';

export interface ReceivedSpan {
  readonly serviceName: string;
  readonly resource: Record<string, unknown>;
  readonly name: string;
  /** OTLP's numbering: 1 INTERNAL, 2 SERVER, 3 CLIENT. */
  readonly kind: number;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly attributes: Record<string, unknown>;
  /** Nanoseconds since the epoch, as OTLP/JSON writes them (strings). */
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
}

export const OTLP_KIND = { SERVER: 2, CLIENT: 3 } as const;

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}

function flatten(attributes: { key: string; value: OtlpValue }[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of attributes ?? []) out[key] = value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue;
  return out;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  private server: Server | undefined;

  async start(host = '127.0.0.1'): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        try {
          this.accept(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } catch (err) {
          res.writeHead(400).end(String(err));
        }
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, host, resolve));
    const { port } = this.server.address() as AddressInfo;
    return `http://${host}:${port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(body: { resourceSpans?: { resource?: { attributes?: { key: string; value: OtlpValue }[] }; scopeSpans?: { spans?: Record<string, unknown>[] }[] }[] }): void {
    for (const resourceSpans of body.resourceSpans ?? []) {
      const resource = flatten(resourceSpans.resource?.attributes);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            serviceName: String(resource['service.name']),
            resource,
            name: String(span.name),
            kind: Number(span.kind),
            traceId: String(span.traceId),
            spanId: String(span.spanId),
            parentSpanId: String(span.parentSpanId ?? ''),
            attributes: flatten(span.attributes as { key: string; value: OtlpValue }[]),
            startTimeUnixNano: String(span.startTimeUnixNano ?? '0'),
            endTimeUnixNano: String(span.endTimeUnixNano ?? '0'),
          });
        }
      }
    }
  }
}
