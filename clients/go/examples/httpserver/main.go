// Command httpserver is a tiny web app whose pages only logged-in users of
// an Express app can see: it hands each request's Cookie header to
// SessionValidator through the net/http middleware.
//
//	go run ./examples/httpserver -validator localhost:50051 -listen :8080
//	curl -H 'Cookie: connect.sid=s%3A...' localhost:8080/
//
// The validator address can also come from SESSIONVALIDATOR_ADDR, and the
// port to serve on from PORT (127.0.0.1:$PORT; 8080 when unset).
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

func main() {
	validator := flag.String("validator", os.Getenv("SESSIONVALIDATOR_ADDR"), "SessionValidator address (host:port or a gRPC target); default $SESSIONVALIDATOR_ADDR")
	listen := flag.String("listen", "127.0.0.1:"+cmp.Or(os.Getenv("PORT"), "8080"), "address to serve HTTP on; default 127.0.0.1:$PORT, else 127.0.0.1:8080")
	flag.Parse()
	if *validator == "" {
		fmt.Fprintln(os.Stderr, "httpserver: set -validator or SESSIONVALIDATOR_ADDR")
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*validator, *listen); err != nil {
		log.Fatal(err)
	}
}

func run(validator, listen string) error {
	sv, err := sessionvalidator.New(validator)
	if err != nil {
		return err
	}
	defer sv.Close()

	mux := http.NewServeMux()
	// Health checks stay outside the middleware.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	// Everything else needs a logged-in user.
	mux.Handle("/", sv.Middleware()(http.HandlerFunc(hello)))

	srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("serving on http://%s, validating sessions with %s", listen, validator)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Finish the requests in flight, then close the validator connection.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

func hello(w http.ResponseWriter, r *http.Request) {
	user, _ := sessionvalidator.UserFromContext(r.Context())
	name := user.DisplayName
	if name == "" {
		name = user.ID
	}
	fmt.Fprintf(w, "Hello, %s!\n", name)
}
