import { ROOT_CONTEXT, TraceFlags, context, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

import { setupTelemetry } from './telemetry';

const options = { role: 'catalog', datacenter: 'dc1', node: 'catalog-1' };
const sampledParent = trace.setSpanContext(ROOT_CONTEXT, { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.SAMPLED });
const unsampledParent = trace.setSpanContext(ROOT_CONTEXT, { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: TraceFlags.NONE });

describe('telemetry', () => {
  test('without an exporter: no trace of its own, but a trace a caller sampled is recorded whole; IDs either way', async () => {
    const telemetry = setupTelemetry({ ...options, env: {} });
    try {
      expect(telemetry.exportTarget).toBe('none');
      const root = telemetry.tracer.startSpan('request');
      expect(root.isRecording()).toBe(false);
      // Logs still carry a trace ID, and callees get one to continue.
      expect(trace.isSpanContextValid(root.spanContext())).toBe(true);
      expect(telemetry.tracer.startSpan('child of sampled', {}, sampledParent).isRecording()).toBe(true);
      expect(telemetry.tracer.startSpan('child of unsampled', {}, unsampledParent).isRecording()).toBe(false);
    } finally {
      await telemetry.shutdown();
    }
  });

  test('with somewhere to send spans, every span is recorded', async () => {
    const exporter = new InMemorySpanExporter();
    const telemetry = setupTelemetry({ ...options, env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
    try {
      telemetry.tracer.startSpan('request').end();
      expect(exporter.getFinishedSpans().map((span) => span.name)).toEqual(['request']);
    } finally {
      await telemetry.shutdown();
    }
  });

  test('OTEL_SDK_DISABLED=true: nothing recorded, no context kept across awaits or passed on', async () => {
    const exporter = new InMemorySpanExporter();
    const telemetry = setupTelemetry({ ...options, env: { OTEL_SDK_DISABLED: 'TRUE', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4317' }, spanProcessors: [new SimpleSpanProcessor(exporter)] });
    try {
      expect(telemetry.exportTarget).toBe('disabled (OTEL_SDK_DISABLED)');
      const span = telemetry.tracer.startSpan('child of sampled', {}, sampledParent);
      expect(span.isRecording()).toBe(false);
      span.end();
      expect(exporter.getFinishedSpans()).toEqual([]);
      const carrier: Record<string, string> = {};
      await context.with(sampledParent, async () => {
        await Promise.resolve();
        propagation.inject(context.active(), carrier);
      });
      expect(carrier).toEqual({});
    } finally {
      await telemetry.shutdown();
    }
  });

  test('OTEL_SDK_DISABLED other than "true" changes nothing', async () => {
    const telemetry = setupTelemetry({ ...options, env: { OTEL_SDK_DISABLED: 'false' } });
    try {
      expect(telemetry.exportTarget).toBe('none');
      const carrier: Record<string, string> = {};
      await context.with(sampledParent, async () => {
        await Promise.resolve();
        propagation.inject(context.active(), carrier);
      });
      expect(carrier.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    } finally {
      await telemetry.shutdown();
    }
  });
});
