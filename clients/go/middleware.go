package sessionvalidator

import (
	"context"
	"net/http"
)

// A MiddlewareOption configures [Client.Middleware] and the server
// interceptors ([Client.UnaryServerInterceptor],
// [Client.StreamServerInterceptor]). Options that only make sense for one of
// them say so and are ignored by the other.
type MiddlewareOption func(*policy)

type policy struct {
	unauthorized         http.Handler
	unavailable          http.Handler
	allowAnonymous       bool
	requireAuthenticated bool
	skipMethods          map[string]bool
}

func newPolicy(opts []MiddlewareOption) *policy {
	p := &policy{
		unauthorized: http.HandlerFunc(defaultUnauthorized),
		unavailable:  http.HandlerFunc(defaultUnavailable),
	}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

// admits reports whether a request with this verdict may reach the handler.
func (p *policy) admits(r *Result) bool {
	switch {
	case p.allowAnonymous:
		return true
	case !r.Valid():
		return false
	default:
		return r.Authenticated || !p.requireAuthenticated
	}
}

// WithUnauthorizedHandler sets the HTTP handler for requests whose session
// is not accepted (default: 401 with a short text body). [FromContext] gives
// it the Result.
func WithUnauthorizedHandler(h http.Handler) MiddlewareOption {
	return func(p *policy) { p.unauthorized = h }
}

// WithUnavailableHandler sets the HTTP handler for requests whose session
// could not be validated: store down, timeout or any other error (default:
// 503 with Retry-After: 1). [ErrorFromContext] gives it the error.
func WithUnavailableHandler(h http.Handler) MiddlewareOption {
	return func(p *policy) { p.unavailable = h }
}

// AllowAnonymous lets every request with a verdict through, valid or not,
// with its Result on the context; the handler decides (check
// [Result.Valid] or use [UserFromContext]). Requests that got an error
// instead of a verdict are still refused: the middleware never fails open.
// AllowAnonymous takes precedence over [RequireAuthenticated].
func AllowAnonymous() MiddlewareOption {
	return func(p *policy) { p.allowAnonymous = true }
}

// RequireAuthenticated also refuses valid sessions without a logged-in
// Passport user (Result.Authenticated false), such as sessions of visitors
// who never logged in or who logged out.
func RequireAuthenticated() MiddlewareOption {
	return func(p *policy) { p.requireAuthenticated = true }
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
// By default it fails closed: a request without a valid session gets 401 and
// one that could not be validated (store down, timeout, any error) gets 503;
// the next handler only sees valid sessions. See the MiddlewareOptions to
// change that.
func (c *Client) Middleware(opts ...MiddlewareOption) func(http.Handler) http.Handler {
	p := newPolicy(opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res, err := c.ValidateRequest(r.Context(), r)
			if err != nil {
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

func defaultUnauthorized(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
}

func defaultUnavailable(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
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
