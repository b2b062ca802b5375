// A web app behind the Node client's Express middleware that traces the standard way: the
// OpenTelemetry SDK (OTLP/HTTP exporter, OTEL_EXPORTER_OTLP_ENDPOINT) and
// @opentelemetry/instrumentation-grpc, registered before the client (and so @grpc/grpc-js) is
// loaded. tests/integration/test_tracing.py runs it and finds the request's trace in a real
// collector: the caller's span, this app's, the gRPC client span, the validator's server span and
// its store span.
//
//   SESSIONVALIDATOR_ADDR=127.0.0.1:50051 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 node app.js
//
// It prints "listening <host:port>" once it serves.
"use strict";

const path = require("node:path");
const http = require("node:http");
const api = require("@opentelemetry/api");
const { NodeTracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace-node");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-http");
const { resourceFromAttributes } = require("@opentelemetry/resources");
const { GrpcInstrumentation } = require("@opentelemetry/instrumentation-grpc");

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": process.env.OTEL_SERVICE_NAME || "node-app" }),
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter())],
});
provider.register(); // the global tracer provider, W3C propagation, async context
const grpcInstrumentation = new GrpcInstrumentation();
grpcInstrumentation.setTracerProvider(provider);

// Loaded only now, so the instrumentation sees @grpc/grpc-js being required.
const client = path.resolve(__dirname, "../../../clients/node/dist");
const { SessionValidatorClient } = require(path.join(client, "index.js"));
const { sessionUser } = require(path.join(client, "express.js"));

const validator = new SessionValidatorClient(process.env.SESSIONVALIDATOR_ADDR);
const middleware = sessionUser(validator);
const tracer = api.trace.getTracer("nodeapp");

const server = http.createServer((req, res) => {
  // What an HTTP server instrumentation does: a SERVER span continuing the request's context.
  const parent = api.propagation.extract(api.context.active(), req.headers);
  const span = tracer.startSpan(`${req.method} ${req.url}`, { kind: api.SpanKind.SERVER }, parent);
  api.context.with(api.trace.setSpan(parent, span), () => {
    middleware(req, res, (error) => {
      res.statusCode = error ? 500 : 200;
      res.end("orders\n");
      span.end();
    });
  });
});
server.listen(0, "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(`listening ${address}:${port}`);
});
process.on("SIGTERM", () => {
  server.close();
  validator.close();
  provider.shutdown().finally(() => process.exit(0));
});
