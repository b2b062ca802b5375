package sessionvalidator

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// A MiddlewareOption configures [Client.Middleware] and the server
// interceptors ([Client.UnaryServerInterceptor],
// [Client.StreamServerInterceptor]). Options that only make sense for one of
// them say so and are ignored by the other.
type MiddlewareOption func(*policy)

type policy struct {
	unauthorized      http.Handler
	unavailable       http.Handler
	customUnavailable bool
	allowAnonymous    bool
	anonymousSessions bool
	exposeVerdict     bool
	logger            *slog.Logger
	warnings          *warnLimiter
	skipMethods       map[string]bool
}

func newPolicy(opts []MiddlewareOption) *policy {
	p := &policy{}
	for _, opt := range opts {
		opt(p)
	}
	if p.unauthorized == nil {
		p.unauthorized = http.HandlerFunc(p.defaultUnauthorized)
	}
	if p.unavailable == nil {
		p.unavailable = http.HandlerFunc(p.defaultUnavailable)
	} else {
		p.customUnavailable = true
	}
	p.warnings = &warnLimiter{logger: p.logger, every: warnEvery}
	return p
}

// admits reports whether a request with this verdict may reach the handler:
// a valid session with a logged-in user, or, with [AllowAnonymousSessions],
// any valid session, or, with [AllowAnonymous], any verdict.
func (p *policy) admits(r *Result) bool {
	switch {
	case p.allowAnonymous:
		return true
	case !r.Valid():
		return false
	default:
		return r.Authenticated || p.anonymousSessions
	}
}

// WithUnauthorizedHandler sets the HTTP handler for requests whose session
// is not accepted (default: 401 {"error":"unauthorized"}). [FromContext]
// gives it the Result.
func WithUnauthorizedHandler(h http.Handler) MiddlewareOption {
	return func(p *policy) { p.unauthorized = h }
}

// WithUnavailableHandler sets the HTTP handler for requests that got no
// verdict: store down, validator unreachable, timeout, rate limited, any
// error (default: 503 {"error":"unavailable"} with Retry-After: 1, or 429
// {"error":"rate_limited"} for RESOURCE_EXHAUSTED). [ErrorFromContext] gives
// it the error. The middleware still logs the warning.
func WithUnavailableHandler(h http.Handler) MiddlewareOption {
	return func(p *policy) { p.unavailable = h }
}

// AllowAnonymous lets every request with a verdict through, valid or not,
// with its Result on the context; the handler decides (check
// [Result.Valid] or use [UserFromContext]). Requests that got an error
// instead of a verdict are still refused: the middleware never fails open.
// Node's { allowAnonymous: true } and Python's allow_anonymous=True mean the
// same.
func AllowAnonymous() MiddlewareOption {
	return func(p *policy) { p.allowAnonymous = true }
}

// AllowAnonymousSessions also admits valid sessions without a logged-in
// Passport user (visitors who never logged in, or logged out; apps with
// saveUninitialized or a visit counter make them). By default such a
// session gets 401. Node's { allowAnonymousSessions: true } and Python's
// allow_anonymous_sessions=True mean the same.
func AllowAnonymousSessions() MiddlewareOption {
	return func(p *policy) { p.anonymousSessions = true }
}

// RequireAuthenticated refuses valid sessions without a logged-in Passport
// user.
//
// Deprecated: that is the default now; see [AllowAnonymousSessions].
func RequireAuthenticated() MiddlewareOption {
	return func(*policy) {}
}

// ExposeVerdict puts the verdict and reason in the default 401 body, and the
// cause in the default 503 body (for debugging; off by default because it
// tells a caller whether a forged signature verified). The interceptors add
// them to their status messages.
func ExposeVerdict() MiddlewareOption {
	return func(p *policy) { p.exposeVerdict = true }
}

// WithLogger sets where the middleware logs its warning when it answers a
// request without a verdict (default [slog.Default]). The warning names the
// cause (such as STORE_UNAVAILABLE or VALIDATOR_UNREACHABLE), never the
// cookie, and is logged at most once every 10 seconds with the count of the
// ones left out.
func WithLogger(l *slog.Logger) MiddlewareOption {
	return func(p *policy) { p.logger = l }
}

// SkipMethods lists full gRPC method names ("/grpc.health.v1.Health/Check")
// that the server interceptors let through without validation or a Result on
// the context. The HTTP middleware ignores it.
func SkipMethods(fullMethods ...string) MiddlewareOption {
	return func(p *policy) {
		if p.skipMethods == nil {
			p.skipMethods = make(map[string]bool, len(fullMethods))
		}
		for _, m := range fullMethods {
			p.skipMethods[m] = true
		}
	}
}

// Middleware returns net/http middleware that validates each request's
// Cookie header and puts the [Result] on the request's context
// ([FromContext], [UserFromContext]).
//
// By default it admits only a valid session with a logged-in user and fails
// closed: any other verdict gets 401 {"error":"unauthorized"}, a request the
// service refuses for too many bad cookies 429 {"error":"rate_limited"}, and
// one that could not be validated (store down, validator unreachable,
// timeout, any error) 503 {"error":"unavailable"} with Retry-After, logged as
// a warning. Every refusal carries Cache-Control: no-store. See the
// MiddlewareOptions to change that; the table is the same in every client
// (tests/vectors/client_conformance.json).
func (c *Client) Middleware(opts ...MiddlewareOption) func(http.Handler) http.Handler {
	p := newPolicy(opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res, err := c.ValidateRequest(r.Context(), r)
			if err != nil {
				p.warnings.warn(err)
				p.unavailable.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), errorKey{}, err)))
				return
			}
			r = r.WithContext(NewContext(r.Context(), res))
			if !p.admits(res) {
				p.unauthorized.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// writeDenial writes a JSON refusal with Cache-Control: no-store.
func writeDenial(w http.ResponseWriter, code int, body map[string]string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func (p *policy) defaultUnauthorized(w http.ResponseWriter, r *http.Request) {
	body := map[string]string{"error": "unauthorized"}
	if res, ok := FromContext(r.Context()); ok && p.exposeVerdict {
		body["verdict"] = res.Verdict.String()
		body["reason"] = res.Reason.String()
	}
	writeDenial(w, http.StatusUnauthorized, body)
}

func (p *policy) defaultUnavailable(w http.ResponseWriter, r *http.Request) {
	err := ErrorFromContext(r.Context())
	var e *Error
	if errors.As(err, &e) && e.Code == codes.ResourceExhausted {
		w.Header().Set("Retry-After", retryAfter(e.RetryDelay))
		writeDenial(w, http.StatusTooManyRequests, map[string]string{"error": "rate_limited"})
		return
	}
	body := map[string]string{"error": "unavailable"}
	if p.exposeVerdict {
		body["reason"] = cause(err)
	}
	w.Header().Set("Retry-After", "1")
	writeDenial(w, http.StatusServiceUnavailable, body)
}

// retryAfter is a Retry-After value: d rounded up to whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}

func cause(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Cause()
	}
	return codes.Unknown.String()
}

const warnEvery = 10 * time.Second

// warnLimiter logs "answered without a verdict" at most once per interval,
// with the number of warnings it left out since the last one.
type warnLimiter struct {
	logger     *slog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (l *warnLimiter) warn(err error) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	logger := l.logger
	if logger == nil {
		logger = slog.Default()
	}
	status := http.StatusServiceUnavailable
	var e *Error
	if errors.As(err, &e) && e.Code == codes.ResourceExhausted {
		status = http.StatusTooManyRequests
	}
	logger.Warn("sessionvalidator: no verdict, answering "+strconv.Itoa(status)+": "+cause(err),
		"cause", cause(err), "status", status, "suppressed", suppressed)
}

type resultKey struct{}

type errorKey struct{}

// NewContext returns a copy of ctx carrying r, as the middleware and the
// interceptors do. It is useful in tests of handlers.
func NewContext(ctx context.Context, r *Result) context.Context {
	return context.WithValue(ctx, resultKey{}, r)
}

// FromContext returns the Result that the middleware or an interceptor put
// on ctx. With [AllowAnonymous] it may be a non-valid one: check
// [Result.Valid].
func FromContext(ctx context.Context) (*Result, bool) {
	r, ok := ctx.Value(resultKey{}).(*Result)
	return r, ok && r != nil
}

// UserFromContext returns the logged-in user of a valid session on ctx. ok
// is false when there is no Result, it is not valid, or the session has no
// logged-in user.
func UserFromContext(ctx context.Context) (*User, bool) {
	r, ok := FromContext(ctx)
	if !ok || !r.Valid() || !r.Authenticated || r.User == nil {
		return nil, false
	}
	return r.User, true
}

// ErrorFromContext returns the error that made the middleware call the
// unavailable handler.
func ErrorFromContext(ctx context.Context) error {
	err, _ := ctx.Value(errorKey{}).(error)
	return err
}
