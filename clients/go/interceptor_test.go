package sessionvalidator_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

// protected is a real gRPC server on 127.0.0.1:0 whose service (the health
// service) is guarded by the interceptors, and a client for it.
type protected struct {
	health healthpb.HealthClient
	mu     sync.Mutex
	seen   *sessionvalidator.Result // what the last guarded call's handler saw
}

func newProtected(t *testing.T, c *sessionvalidator.Client, opts ...sessionvalidator.MiddlewareOption) *protected {
	t.Helper()
	p := &protected{}
	record := func(ctx context.Context) {
		res, _ := sessionvalidator.FromContext(ctx)
		p.mu.Lock()
		p.seen = res
		p.mu.Unlock()
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(c.UnaryServerInterceptor(opts...),
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				record(ctx)
				return h(ctx, req)
			}),
		grpc.ChainStreamInterceptor(c.StreamServerInterceptor(opts...),
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				record(ss.Context())
				return h(srv, ss)
			}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	p.health = healthpb.NewHealthClient(conn)
	return p
}

// lastSeen returns and forgets what the handler last saw.
func (p *protected) lastSeen() *sessionvalidator.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := p.seen
	p.seen = nil
	return res
}

// check calls the unary Health/Check with the given cookie metadata values.
func (p *protected) check(t *testing.T, cookies ...string) error {
	t.Helper()
	_, err := p.health.Check(withCookies(t.Context(), cookies), &healthpb.HealthCheckRequest{})
	return err
}

// watch opens the server-streaming Health/Watch and reads its first message.
func (p *protected) watch(t *testing.T, cookies ...string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(withCookies(t.Context(), cookies))
	defer cancel()
	stream, err := p.health.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func withCookies(ctx context.Context, cookies []string) context.Context {
	for _, c := range cookies {
		ctx = metadata.AppendToOutgoingContext(ctx, "cookie", c)
	}
	return ctx
}

func TestInterceptors(t *testing.T) {
	p := newProtected(t, liveClient(t))
	for _, tc := range []struct {
		name    string
		cookies []string
		code    codes.Code
		user    string
	}{
		{"valid user", []string{header(t, "valid_object_user")}, codes.OK, "u-100"},
		{"valid anonymous", []string{header(t, "valid_anonymous_session")}, codes.Unauthenticated, ""},
		{"bad signature", []string{header(t, "bad_signature_tampered")}, codes.Unauthenticated, ""},
		{"no cookie", nil, codes.Unauthenticated, ""},
		{"two values, valid first", []string{header(t, "valid_scalar_user"), "connect.sid=garbage"}, codes.OK, "42"},
		{"two values, garbage first", []string{"connect.sid=garbage", header(t, "valid_scalar_user")}, codes.Unauthenticated, ""},
	} {
		for method, call := range map[string]func(*testing.T, ...string) error{"unary": p.check, "stream": p.watch} {
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				err := call(t, tc.cookies...)
				if got := status.Code(err); got != tc.code {
					t.Fatalf("code = %s (%v), want %s", got, err, tc.code)
				}
				seen := p.lastSeen()
				if tc.code != codes.OK {
					if seen != nil {
						t.Errorf("the handler ran for a refused call")
					}
					return
				}
				if !seen.Valid() {
					t.Fatalf("handler saw %+v, want a valid Result", seen)
				}
				got := ""
				if seen.User != nil {
					got = seen.User.ID
				}
				if got != tc.user {
					t.Errorf("handler saw user %q, want %q", got, tc.user)
				}
			})
		}
	}
}

func TestInterceptorsStoreDown(t *testing.T) {
	p := newProtected(t, downClient(t))
	if err := p.check(t, header(t, "valid_scalar_user")); status.Code(err) != codes.Unavailable {
		t.Errorf("unary: %v, want Unavailable", err)
	}
	if err := p.watch(t, header(t, "valid_scalar_user")); status.Code(err) != codes.Unavailable {
		t.Errorf("stream: %v, want Unavailable", err)
	}
	// A bad cookie is refused on its own merits, store or no store.
	if err := p.check(t, header(t, "bad_signature_tampered")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("bad cookie: %v, want Unauthenticated", err)
	}
}

func TestInterceptorOptions(t *testing.T) {
	c := liveClient(t)
	p := newProtected(t, c, sessionvalidator.SkipMethods(healthpb.Health_Watch_FullMethodName))
	if err := p.check(t, header(t, "valid_anonymous_session")); status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != "unauthorized" {
		t.Errorf("default, anonymous session: %v, want Unauthenticated \"unauthorized\"", err)
	}
	if err := p.check(t, header(t, "valid_scalar_user")); err != nil {
		t.Errorf("default, logged-in user: %v", err)
	}
	if err := p.watch(t); err != nil {
		t.Errorf("skipped method without a cookie: %v", err)
	}
	if seen := p.lastSeen(); seen != nil {
		t.Errorf("skipped method got a Result: %+v", seen)
	}

	p = newProtected(t, c, sessionvalidator.AllowAnonymousSessions())
	if err := p.check(t, header(t, "valid_anonymous_session")); err != nil {
		t.Errorf("AllowAnonymousSessions, anonymous session: %v", err)
	}

	p = newProtected(t, c, sessionvalidator.AllowAnonymous())
	if err := p.check(t, header(t, "bad_signature_tampered")); err != nil {
		t.Errorf("AllowAnonymous, bad cookie: %v", err)
	}
	if seen := p.lastSeen(); seen == nil || seen.Verdict != sessionvalidator.VerdictBadSignature {
		t.Errorf("AllowAnonymous: handler saw %+v, want BAD_SIGNATURE", seen)
	}
}
