// Command reference-go is a hand-written Go peer of SessionValidator, used
// only as a benchmark baseline: grpc-go + go-redis, same contract and verdicts.
//
// Configuration (environment): REF_LISTEN, REF_REDIS_URL, REF_SECRETS (JSON
// array, required), REF_COOKIE_NAME, REF_KEY_PREFIX, REF_USER_KEY.
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	pb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

const storeTimeout = 100 * time.Millisecond

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// keyPrefix honours an empty REF_KEY_PREFIX, as connect-redis honours prefix: "".
func keyPrefix() string {
	if v, ok := os.LookupEnv("REF_KEY_PREFIX"); ok {
		return v
	}
	return "sess:"
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}

func main() {
	var secrets []string
	if err := json.Unmarshal([]byte(os.Getenv("REF_SECRETS")), &secrets); err != nil || len(secrets) == 0 {
		fail(2, "REF_SECRETS: required, a JSON array of one or more strings")
	}
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		if s == "" {
			fail(2, "REF_SECRETS: secrets must not be empty")
		}
		keys[i] = []byte(s)
	}

	opts, err := redis.ParseURL(env("REF_REDIS_URL", "redis://127.0.0.1:6379/0"))
	if err != nil {
		fail(2, "REF_REDIS_URL: %v", err)
	}
	opts.DialTimeout = storeTimeout
	opts.ReadTimeout = storeTimeout
	opts.WriteTimeout = storeTimeout
	opts.PoolTimeout = storeTimeout
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	v := &validator{
		signer:     signer{keys: keys},
		rdb:        rdb,
		cookieName: env("REF_COOKIE_NAME", "connect.sid"),
		keyPrefix:  keyPrefix(),
		userKey:    os.Getenv("REF_USER_KEY"),
		timeout:    storeTimeout,
	}

	lis, err := net.Listen("tcp", env("REF_LISTEN", "127.0.0.1:50061"))
	if err != nil {
		fail(1, "listen: %v", err)
	}
	srv := grpc.NewServer()
	pb.RegisterSessionValidatorServer(srv, v)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pb.SessionValidator_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		hs.Shutdown()
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
	}()

	fmt.Printf("{\"event\":\"serving\",\"port\":%d}\n", lis.Addr().(*net.TCPAddr).Port)
	if err := srv.Serve(lis); err != nil {
		fail(1, "serve: %v", err)
	}
}
