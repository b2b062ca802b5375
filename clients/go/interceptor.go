package sessionvalidator

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// UnaryServerInterceptor returns a gRPC server interceptor for services whose
// callers forward the browser's Cookie header as "cookie" metadata (as
// grpc-web proxies and gateways do). Every "cookie" value is joined with
// "; " in order and validated; the [Result] goes on the handler's context
// ([FromContext], [UserFromContext]).
//
// A call without an accepted session (by default: a valid session with a
// logged-in user) ends with codes.Unauthenticated, one the service refused
// for too many bad cookies with codes.ResourceExhausted, one that could not
// be validated with codes.Unavailable (or the call's own
// DEADLINE_EXCEEDED/CANCELED when its context ended first). Messages name
// no verdict unless [ExposeVerdict] is given. [AllowAnonymous],
// [AllowAnonymousSessions], [WithLogger] and [SkipMethods] apply; the HTTP
// handler options do not.
//
// gRPC metadata values are printable ASCII, so cookies with other bytes
// cannot arrive this way; callers holding such cookies should use
// [Client.ValidateCookieHeader] instead.
func (c *Client) UnaryServerInterceptor(opts ...MiddlewareOption) grpc.UnaryServerInterceptor {
	p := newPolicy(opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if p.skipMethods[info.FullMethod] {
			return handler(ctx, req)
		}
		ctx, err := c.authorize(ctx, p)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is [Client.UnaryServerInterceptor] for streaming
// methods: the session is validated once, when the stream starts.
func (c *Client) StreamServerInterceptor(opts ...MiddlewareOption) grpc.StreamServerInterceptor {
	p := newPolicy(opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if p.skipMethods[info.FullMethod] {
			return handler(srv, ss)
		}
		ctx, err := c.authorize(ss.Context(), p)
		if err != nil {
			return err
		}
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

// authorize validates the cookie metadata of an incoming call and returns
// the context carrying the Result, or the status error that ends the call.
func (c *Client) authorize(ctx context.Context, p *policy) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	res, err := c.ValidateCookieHeaderString(ctx, strings.Join(md.Get("cookie"), "; "))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, status.FromContextError(ctxErr).Err()
		}
		p.warnings.warn(err)
		if errors.Is(err, ErrRateLimited) {
			return nil, status.Error(codes.ResourceExhausted, "too many bad session cookies")
		}
		if p.exposeVerdict {
			return nil, status.Errorf(codes.Unavailable, "session validation unavailable: %s", cause(err))
		}
		return nil, status.Error(codes.Unavailable, "session validation unavailable")
	}
	ctx = NewContext(ctx, res)
	if !p.admits(res) {
		if p.exposeVerdict {
			return nil, status.Errorf(codes.Unauthenticated, "unauthorized: %s %s", res.Verdict, res.Reason)
		}
		return nil, status.Error(codes.Unauthenticated, "unauthorized")
	}
	return ctx, nil
}

// serverStream replaces a stream's context with one carrying the Result.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
