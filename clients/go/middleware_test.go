package sessionvalidator_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

// whoami is the protected handler: it answers 200 with what it sees on the
// request's context.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	res, ok := sessionvalidator.FromContext(r.Context())
	if !ok {
		http.Error(w, "no result on the context", http.StatusInternalServerError)
		return
	}
	user := "-"
	if u, ok := sessionvalidator.UserFromContext(r.Context()); ok {
		user = u.ID
	}
	fmt.Fprintf(w, "%s %s", res.Verdict, user)
})

// serve runs mw(whoami) on a real HTTP server and returns a function that
// sends a GET with the given Cookie headers (each one a header line, bytes
// as given) and returns the status and body.
func serve(t *testing.T, mw func(http.Handler) http.Handler) func(cookies ...string) (int, string, http.Header) {
	t.Helper()
	srv := httptest.NewServer(mw(whoami))
	t.Cleanup(srv.Close)
	return func(cookies ...string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Cookie"] = cookies
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header
	}
}

func TestMiddleware(t *testing.T) {
	get := serve(t, liveClient(t).Middleware())
	for _, tc := range []struct {
		name    string
		cookies []string
		status  int
		body    string
	}{
		{"valid user", []string{header(t, "valid_object_user")}, 200, "VERDICT_VALID u-100"},
		{"valid anonymous", []string{header(t, "valid_anonymous_session")}, 401, `{"error":"unauthorized"}`},
		{"raw latin-1 byte", []string{header(t, "valid_latin1_byte_session_id")}, 200, "VERDICT_VALID latin"},
		{"utf-8 bytes", []string{header(t, "bad_signature_utf8_bytes_seen_as_latin1")}, 401, `{"error":"unauthorized"}`},
		{"bad signature", []string{header(t, "bad_signature_tampered")}, 401, `{"error":"unauthorized"}`},
		{"expired", []string{header(t, "expired_session_without_ttl")}, 401, `{"error":"unauthorized"}`},
		{"no cookie", nil, 401, `{"error":"unauthorized"}`},
		{"two headers, valid first", []string{header(t, "valid_scalar_user"), "connect.sid=garbage"}, 200, "VERDICT_VALID 42"},
		{"two headers, garbage first", []string{"connect.sid=garbage", header(t, "valid_scalar_user")}, 401, `{"error":"unauthorized"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := get(tc.cookies...)
			if status != tc.status || body != tc.body {
				t.Errorf("got %d %q, want %d %q", status, body, tc.status, tc.body)
			}
		})
	}
}

func TestMiddlewareStoreDown(t *testing.T) {
	get := serve(t, downClient(t).Middleware())
	status, body, h := get(header(t, "valid_scalar_user"))
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("got %d %q (Retry-After %q), want 503 with Retry-After", status, body, h.Get("Retry-After"))
	}
	// Failing closed: AllowAnonymous does not let errors through.
	get = serve(t, downClient(t).Middleware(sessionvalidator.AllowAnonymous()))
	if status, body, _ := get(header(t, "valid_scalar_user")); status != http.StatusServiceUnavailable {
		t.Errorf("AllowAnonymous with the store down: got %d %q, want 503", status, body)
	}
}

func TestMiddlewareTimeout(t *testing.T) {
	get := serve(t, newClient(t, blackhole(t)).Middleware())
	start := time.Now()
	status, body, _ := get(header(t, "valid_scalar_user"))
	if status != http.StatusServiceUnavailable {
		t.Errorf("got %d %q, want 503", status, body)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("answered after %v, want about %v", elapsed, sessionvalidator.DefaultTimeout)
	}
}

func TestMiddlewareAllowAnonymous(t *testing.T) {
	get := serve(t, liveClient(t).Middleware(sessionvalidator.AllowAnonymous()))
	for cookie, want := range map[string]string{
		header(t, "valid_object_user"):      "VERDICT_VALID u-100",
		header(t, "bad_signature_tampered"): "VERDICT_BAD_SIGNATURE -",
		"":                                  "VERDICT_MISSING -",
	} {
		var cookies []string
		if cookie != "" {
			cookies = []string{cookie}
		}
		if status, body, _ := get(cookies...); status != 200 || body != want {
			t.Errorf("Cookie %q: got %d %q, want 200 %q", cookie, status, body, want)
		}
	}
}

func TestMiddlewareAnonymousSessions(t *testing.T) {
	get := serve(t, liveClient(t).Middleware(sessionvalidator.AllowAnonymousSessions()))
	if status, body, _ := get(header(t, "valid_anonymous_session")); status != 200 || body != "VERDICT_VALID -" {
		t.Errorf("anonymous session: got %d %q, want 200", status, body)
	}
	if status, body, _ := get(header(t, "bad_signature_tampered")); status != http.StatusUnauthorized {
		t.Errorf("bad cookie: got %d %q, want 401", status, body)
	}
	// The default (and the deprecated RequireAuthenticated) refuses it.
	for _, mw := range []func(http.Handler) http.Handler{liveClient(t).Middleware(), liveClient(t).Middleware(sessionvalidator.RequireAuthenticated())} {
		get = serve(t, mw)
		if status, body, _ := get(header(t, "valid_anonymous_session")); status != http.StatusUnauthorized {
			t.Errorf("anonymous session: got %d %q, want 401", status, body)
		}
		if status, body, _ := get(header(t, "valid_user_id_zero")); status != 200 || body != "VERDICT_VALID 0" {
			t.Errorf("user 0: got %d %q, want 200", status, body)
		}
	}
}

func TestMiddlewareHandlers(t *testing.T) {
	unauthorized := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, _ := sessionvalidator.FromContext(r.Context())
		http.Error(w, "login please: "+res.Reason.String(), http.StatusForbidden)
	})
	unavailable := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := sessionvalidator.ErrorFromContext(r.Context())
		var e *sessionvalidator.Error
		if !errors.Is(err, sessionvalidator.ErrStoreUnavailable) || !errors.As(err, &e) {
			http.Error(w, fmt.Sprintf("unexpected error %v", err), http.StatusInternalServerError)
			return
		}
		http.Error(w, "down: "+e.Reason, http.StatusBadGateway)
	})
	opts := []sessionvalidator.MiddlewareOption{
		sessionvalidator.WithUnauthorizedHandler(unauthorized),
		sessionvalidator.WithUnavailableHandler(unavailable),
	}
	get := serve(t, liveClient(t).Middleware(opts...))
	if status, body, _ := get(header(t, "bad_signature_tampered")); status != 403 || body != "login please: REASON_SIGNATURE_MISMATCH" {
		t.Errorf("bad cookie: got %d %q", status, body)
	}
	get = serve(t, downClient(t).Middleware(opts...))
	if status, body, _ := get(header(t, "valid_scalar_user")); status != 502 || body != "down: STORE_UNAVAILABLE" {
		t.Errorf("store down: got %d %q", status, body)
	}
}
