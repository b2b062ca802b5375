package sessionvalidator_test

import (
	"errors"
	"fmt"
	"log"
	"net/http"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

// Examples without an "Output:" comment are compiled but not run.

func ExampleClient_Middleware() {
	sv, err := sessionvalidator.New("sessionvalidator.internal:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer sv.Close()

	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := sessionvalidator.UserFromContext(r.Context())
		fmt.Fprintf(w, "hello %s", user.ID)
	})
	log.Fatal(http.ListenAndServe(":8080", sv.Middleware()(app)))
}

func ExampleClient_ValidateRequest() {
	sv, err := sessionvalidator.New("sessionvalidator.internal:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer sv.Close()

	http.HandleFunc("/me", func(w http.ResponseWriter, r *http.Request) {
		res, err := sv.ValidateRequest(r.Context(), r)
		switch {
		case errors.Is(err, sessionvalidator.ErrStoreUnavailable):
			w.Header().Set("Retry-After", "1")
			http.Error(w, "try again", http.StatusServiceUnavailable)
		case err != nil: // a deadline or a bug: no verdict either, never a 401
			log.Print(err)
			http.Error(w, "try again", http.StatusServiceUnavailable)
		case !res.Valid():
			http.Error(w, "log in first ("+res.Reason.String()+")", http.StatusUnauthorized)
		case !res.Authenticated:
			fmt.Fprintln(w, "hello, visitor")
		default:
			fmt.Fprintf(w, "hello, %s\n", res.User.DisplayName)
		}
	})
}

func ExampleClient_UnaryServerInterceptor() {
	sv, err := sessionvalidator.New("sessionvalidator.internal:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer sv.Close()

	// Health checks come from the orchestrator, without cookies.
	skip := sessionvalidator.SkipMethods(healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(sv.UnaryServerInterceptor(skip)),
		grpc.ChainStreamInterceptor(sv.StreamServerInterceptor(skip)),
	)
	_ = srv // register services, then srv.Serve(listener)
}
