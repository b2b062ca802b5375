// Command goapp is a web app behind the Go client's middleware that traces the standard way: the
// OpenTelemetry SDK (OTLP/HTTP exporter, configured by OTEL_* variables) and the otelgrpc stats
// handler on the client's connection. tests/integration/test_tracing.py runs it and finds the
// request's trace in a real collector: the caller's span, this app's, the gRPC client span, the
// validator's server span and its store span.
//
//	SESSIONVALIDATOR_ADDR=127.0.0.1:50051 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 goapp
//
// It prints "listening <host:port>" once it serves, and exports what it holds on SIGTERM.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx := context.Background()
	exporter, err := otlptracehttp.New(ctx) // OTEL_EXPORTER_OTLP_ENDPOINT
	if err != nil {
		return err
	}
	// The default resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
	provider := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer provider.Shutdown(ctx) //nolint:errcheck // exiting anyway
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})

	// The one line that makes the client's calls part of the app's traces.
	sv, err := sessionvalidator.New(os.Getenv("SESSIONVALIDATOR_ADDR"),
		sessionvalidator.WithDialOptions(grpc.WithStatsHandler(otelgrpc.NewClientHandler())))
	if err != nil {
		return err
	}
	defer sv.Close()

	orders := sv.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "orders")
	}))
	tracer := provider.Tracer("goapp")
	// What otelhttp.NewHandler does, in a few lines: a SERVER span continuing the request's context.
	traced := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		orders.ServeHTTP(w, r.WithContext(ctx))
	})

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("listening", listener.Addr().String())
	server := &http.Server{Handler: traced}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		server.Close()
	}()
	if err := server.Serve(listener); err != http.ErrServerClosed {
		return err
	}
	return nil
}
