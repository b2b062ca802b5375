package sessionvalidator_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// TestVectors runs every shared vector through every way the client can
// send it and checks every field the vector expects.
func TestVectors(t *testing.T) {
	c := liveClient(t)
	for _, vc := range loadVectors(t) {
		t.Run(vc.Name, func(t *testing.T) {
			type form struct {
				name string
				call func(context.Context) (*sessionvalidator.Result, error)
			}
			// The request exactly as the vector gives it.
			asGiven := &svpb.ValidateSessionRequest{}
			switch r := vc.Request; {
			case r.CookieHeaderText != nil:
				asGiven.Credential = &svpb.ValidateSessionRequest_CookieHeaderText{CookieHeaderText: *r.CookieHeaderText}
			case r.CookieHeaderB64 != nil:
				b, _ := headerBytes(t, vc)
				asGiven.Credential = &svpb.ValidateSessionRequest_CookieHeader{CookieHeader: b}
			case r.SignedValue != nil:
				asGiven.Credential = &svpb.ValidateSessionRequest_SignedValue{SignedValue: *r.SignedValue}
			}
			forms := []form{{"Validate", func(ctx context.Context) (*sessionvalidator.Result, error) {
				return c.Validate(ctx, asGiven)
			}}}
			if raw, ok := headerBytes(t, vc); ok {
				forms = append(forms,
					form{"ValidateCookieHeader", func(ctx context.Context) (*sessionvalidator.Result, error) {
						return c.ValidateCookieHeader(ctx, raw)
					}},
					form{"ValidateCookieHeaderString", func(ctx context.Context) (*sessionvalidator.Result, error) {
						return c.ValidateCookieHeaderString(ctx, string(raw))
					}},
					form{"ValidateRequest", func(ctx context.Context) (*sessionvalidator.Result, error) {
						r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
						r.Header["Cookie"] = []string{string(raw)}
						return c.ValidateRequest(ctx, r)
					}})
			}
			if vc.Request.SignedValue != nil {
				forms = append(forms, form{"ValidateSignedValue", func(ctx context.Context) (*sessionvalidator.Result, error) {
					return c.ValidateSignedValue(ctx, *vc.Request.SignedValue)
				}})
			}
			if asGiven.Credential == nil { // no Cookie header at all
				forms = append(forms, form{"ValidateRequest", func(ctx context.Context) (*sessionvalidator.Result, error) {
					r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
					return c.ValidateRequest(ctx, r)
				}})
			}
			for _, f := range forms {
				t.Run(f.name, func(t *testing.T) {
					res, err := f.call(t.Context())
					if err != nil {
						t.Fatalf("unexpected error: %v", err)
					}
					checkExpect(t, res, vc.Expect)
				})
			}
		})
	}
}

// checkExpect compares a Result with a vector's expectation; fields the
// vector leaves out are not checked.
func checkExpect(t *testing.T, res *sessionvalidator.Result, want vectorExpect) {
	t.Helper()
	if got := res.Verdict.String(); got != want.Verdict {
		t.Errorf("verdict = %s, want %s", got, want.Verdict)
	}
	if got := res.Reason.String(); got != want.Reason {
		t.Errorf("reason = %s, want %s", got, want.Reason)
	}
	if got, want := res.Valid(), want.Verdict == "VERDICT_VALID"; got != want {
		t.Errorf("Valid() = %v, want %v", got, want)
	}
	if want.SessionID != nil && res.SessionID != *want.SessionID {
		t.Errorf("session_id = %q, want %q", res.SessionID, *want.SessionID)
	}
	if want.Authenticated != nil && res.Authenticated != *want.Authenticated {
		t.Errorf("authenticated = %v, want %v", res.Authenticated, *want.Authenticated)
	}
	if want.SecretIndex != nil {
		if got, ok := res.SecretIndex(); !ok || got != *want.SecretIndex {
			t.Errorf("secret_index = %d (set %v), want %d", got, ok, *want.SecretIndex)
		}
	}
	if want.HasExpireTime != nil && !res.ExpireTime.IsZero() != *want.HasExpireTime {
		t.Errorf("expire_time = %v, want set = %v", res.ExpireTime, *want.HasExpireTime)
	}
	if want.Attributes != nil {
		if res.User == nil || !reflect.DeepEqual(res.User.Attributes, want.Attributes) {
			t.Errorf("user attributes = %v, want %v", res.User, want.Attributes)
		}
	}
	if want.User == nil {
		return
	}
	u := res.User
	if u == nil {
		t.Fatalf("user = nil, want %+v", *want.User)
	}
	check := func(field, got string, want *string) {
		if want != nil && got != *want {
			t.Errorf("user.%s = %q, want %q", field, got, *want)
		}
	}
	check("id", u.ID, want.User.ID)
	check("username", u.Username, want.User.Username)
	check("display_name", u.DisplayName, want.User.DisplayName)
	check("email", u.Email, want.User.Email)
	if want.User.Roles != nil && !slices.Equal(u.Roles, *want.User.Roles) {
		t.Errorf("user.roles = %q, want %q", u.Roles, *want.User.Roles)
	}
}

// TestBytesAreSentExactly: the Cookie header travels as raw bytes, not as
// text, so a latin-1 byte (0xE9) is the character é that Node sees, and the
// UTF-8 bytes of é are two other characters.
func TestBytesAreSentExactly(t *testing.T) {
	c := liveClient(t)
	latin1 := header(t, "valid_latin1_byte_session_id")
	if !bytes.Contains([]byte(latin1), []byte{':', 0xE9, '.'}) {
		t.Fatalf("vector valid_latin1_byte_session_id no longer holds the raw byte 0xE9: %q", latin1)
	}
	utf8 := header(t, "bad_signature_utf8_bytes_seen_as_latin1")
	if !bytes.Contains([]byte(utf8), []byte("é")) {
		t.Fatalf("vector bad_signature_utf8_bytes_seen_as_latin1 no longer holds UTF-8 é: %q", utf8)
	}
	for _, tc := range []struct {
		header  string
		verdict sessionvalidator.Verdict
		sid     string
		user    string
	}{
		{latin1, sessionvalidator.VerdictValid, "é", "latin"},
		{utf8, sessionvalidator.VerdictBadSignature, "", ""},
	} {
		res, err := c.ValidateCookieHeader(t.Context(), []byte(tc.header))
		if err != nil {
			t.Fatal(err)
		}
		if res.Verdict != tc.verdict || res.SessionID != tc.sid {
			t.Errorf("ValidateCookieHeader(%q) = %s %q, want %s %q", tc.header, res.Verdict, res.SessionID, tc.verdict, tc.sid)
		}
		if tc.user != "" && (res.User == nil || res.User.ID != tc.user) {
			t.Errorf("ValidateCookieHeader(%q) user = %+v, want id %q", tc.header, res.User, tc.user)
		}
		// A Go string holding the same bytes is sent the same way.
		res, err = c.ValidateCookieHeaderString(t.Context(), tc.header)
		if err != nil {
			t.Fatal(err)
		}
		if res.Verdict != tc.verdict {
			t.Errorf("ValidateCookieHeaderString(%q) = %s, want %s", tc.header, res.Verdict, tc.verdict)
		}
	}
}

// TestValidateRequestJoinsCookieHeaders: several Cookie headers are joined
// with "; " in arrival order, so the first connect.sid wins, as in Node.
func TestValidateRequestJoinsCookieHeaders(t *testing.T) {
	c := liveClient(t)
	valid := header(t, "valid_scalar_user")
	for _, tc := range []struct {
		headers []string
		verdict sessionvalidator.Verdict
	}{
		{[]string{"theme=dark", valid}, sessionvalidator.VerdictValid},
		{[]string{valid, "connect.sid=garbage"}, sessionvalidator.VerdictValid},
		{[]string{"connect.sid=garbage", valid}, sessionvalidator.VerdictMalformed},
		{nil, sessionvalidator.VerdictMissing},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		for _, h := range tc.headers {
			r.Header.Add("Cookie", h)
		}
		res, err := c.ValidateRequest(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		if res.Verdict != tc.verdict {
			t.Errorf("Cookie headers %q: verdict %s, want %s", tc.headers, res.Verdict, tc.verdict)
		}
	}
}

// attemptCounter counts client RPC attempts, retries included.
type attemptCounter struct{ n atomic.Int32 }

func (a *attemptCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (a *attemptCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (a *attemptCounter) HandleConn(context.Context, stats.ConnStats) {}
func (a *attemptCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if b, ok := s.(*stats.Begin); ok && b.IsClient() {
		a.n.Add(1)
	}
}

// TestStoreDown: a store outage is an error (never a verdict) that matches
// ErrStoreUnavailable and carries the service's reason, after the default
// retry policy tried three times.
func TestStoreDown(t *testing.T) {
	attempts := &attemptCounter{}
	// A long deadline: this is about the mapping and the retries, not the deadline.
	c := downClient(t, sessionvalidator.WithDialOptions(grpc.WithStatsHandler(attempts)), sessionvalidator.WithTimeout(5*time.Second))
	res, err := c.ValidateCookieHeaderString(t.Context(), header(t, "valid_scalar_user"))
	if err == nil {
		t.Fatalf("got verdict %s, want an error", res.Verdict)
	}
	if res != nil {
		t.Errorf("got a Result with the error: %+v", res)
	}
	if !errors.Is(err, sessionvalidator.ErrStoreUnavailable) {
		t.Errorf("errors.Is(%v, ErrStoreUnavailable) = false", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("store outage %v matches context.DeadlineExceeded", err)
	}
	var e *sessionvalidator.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T is not *Error", err)
	}
	if e.Code != codes.Unavailable || e.Reason != sessionvalidator.ReasonStoreUnavailable {
		t.Errorf("error = %s %q, want Unavailable %q", e.Code, e.Reason, sessionvalidator.ReasonStoreUnavailable)
	}
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("status.Code = %s, want Unavailable", got)
	}
	if got := attempts.n.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3 (retry policy maxAttempts)", got)
	}

	// A cookie judged without the store still gets its verdict.
	res, err = c.ValidateCookieHeaderString(t.Context(), header(t, "bad_signature_tampered"))
	if err != nil || res.Verdict != sessionvalidator.VerdictBadSignature {
		t.Errorf("bad signature with the store down = %v, %v; want BAD_SIGNATURE", res, err)
	}
}

// TestDefaultDeadline: a validator that accepts the connection and never
// answers costs the default 150 ms, not a hang, and the error says deadline.
func TestDefaultDeadline(t *testing.T) {
	addr := blackhole(t)
	for _, tc := range []struct {
		name    string
		opts    []sessionvalidator.Option
		ctx     func(t *testing.T) (context.Context, context.CancelFunc)
		timeout time.Duration
	}{
		{"default", nil, nil, sessionvalidator.DefaultTimeout},
		{"WithTimeout", []sessionvalidator.Option{sessionvalidator.WithTimeout(40 * time.Millisecond)}, nil, 40 * time.Millisecond},
		{"earlier context deadline", nil, func(t *testing.T) (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 30*time.Millisecond)
		}, 30 * time.Millisecond},
		{"later context deadline", nil, func(t *testing.T) (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 10*time.Second)
		}, sessionvalidator.DefaultTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, addr, tc.opts...)
			ctx, cancel := t.Context(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx(t)
			}
			defer cancel()
			start := time.Now()
			res, err := c.ValidateCookieHeaderString(ctx, "connect.sid=s%3Aabc.def")
			elapsed := time.Since(start)
			if err == nil {
				t.Fatalf("got verdict %s from a silent server", res.Verdict)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(%v, context.DeadlineExceeded) = false", err)
			}
			if errors.Is(err, sessionvalidator.ErrStoreUnavailable) {
				t.Errorf("deadline error %v matches ErrStoreUnavailable", err)
			}
			if status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("status.Code(%v) = %s", err, status.Code(err))
			}
			if elapsed < tc.timeout-5*time.Millisecond || elapsed > tc.timeout+time.Second {
				t.Errorf("failed after %v, want about %v", elapsed, tc.timeout)
			}
		})
	}
}

// TestSignedValueMustBeUTF8: a signed value is a proto string, so bytes that
// are not UTF-8 are refused before the call with InvalidArgument.
func TestSignedValueMustBeUTF8(t *testing.T) {
	c := newClient(t, blackhole(t)) // never reached
	res, err := c.ValidateSignedValue(t.Context(), "s:\xe9.sig")
	var e *sessionvalidator.Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || status.Code(err) != codes.InvalidArgument {
		t.Errorf("ValidateSignedValue(non-UTF-8) = %v, %v; want an InvalidArgument *Error", res, err)
	}
}

func TestValidOnlyForVerdictValid(t *testing.T) {
	for v, want := range map[sessionvalidator.Verdict]bool{
		sessionvalidator.VerdictValid:        true,
		svpb.Verdict_VERDICT_UNSPECIFIED:     false,
		sessionvalidator.VerdictBadSignature: false,
		sessionvalidator.VerdictMalformed:    false,
		sessionvalidator.VerdictExpired:      false,
		sessionvalidator.VerdictMissing:      false,
		sessionvalidator.Verdict(99):         false, // a verdict added after this client
	} {
		if got := (&sessionvalidator.Result{Verdict: v}).Valid(); got != want {
			t.Errorf("Result{Verdict: %s}.Valid() = %v, want %v", v, got, want)
		}
	}
	if (*sessionvalidator.Result)(nil).Valid() {
		t.Error("nil Result is valid")
	}
}
