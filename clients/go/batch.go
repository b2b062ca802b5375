package sessionvalidator

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// MaxBatch is the most credentials one [Client.ValidateBatch] call may carry
// (the service answers more with InvalidArgument, reason BATCH_TOO_LARGE).
const MaxBatch = 256

// BatchItem is the answer for one credential of a batch: a [Result], or, when
// the service refused that credential on its own (a bad cookie over the
// caller's rate limit), Err with the status that credential would have failed
// with alone (Code, Reason such as RATE_LIMITED, Message, RetryDelay). With
// Err set, Result holds VERDICT_UNSPECIFIED: not valid.
type BatchItem struct {
	*Result
	Err *Error
}

// ValidateBatch judges up to [MaxBatch] credentials in one call and one store
// round trip (ValidateSessions): each gets the answer [Client.Validate] would
// give it, in the same order, or a per-item Err. A non-nil error means the
// whole call failed (store down, overload, a banned client, too many
// credentials) and is an [*Error] like Validate's.
func (c *Client) ValidateBatch(ctx context.Context, reqs []*svpb.ValidateSessionRequest) ([]BatchItem, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.rpc.ValidateSessions(ctx, &svpb.ValidateSessionsRequest{Requests: reqs})
	if err != nil {
		return nil, newError(err)
	}
	if len(resp.GetResponses()) != len(reqs) {
		st := status.Newf(codes.Internal, "the service answered %d of %d credentials", len(resp.GetResponses()), len(reqs))
		return nil, &Error{Code: st.Code(), Message: st.Message(), status: st}
	}
	items := make([]BatchItem, len(reqs))
	for i, r := range resp.GetResponses() {
		items[i].Result = newResult(r)
		if e := r.GetError(); e != nil {
			st := status.New(codes.Code(e.GetCode()), e.GetMessage())
			items[i].Err = &Error{Code: st.Code(), Reason: reasonName(e.GetReason()), Message: e.GetMessage(), status: st}
			if e.GetRetryDelay() != nil {
				items[i].Err.RetryDelay = e.GetRetryDelay().AsDuration()
			}
		}
	}
	return items, nil
}

// ValidateCookieHeaders is [Client.ValidateBatch] for raw Cookie headers.
func (c *Client) ValidateCookieHeaders(ctx context.Context, headers ...[]byte) ([]BatchItem, error) {
	reqs := make([]*svpb.ValidateSessionRequest, len(headers))
	for i, h := range headers {
		if h == nil {
			h = []byte{}
		}
		reqs[i] = &svpb.ValidateSessionRequest{Credential: &svpb.ValidateSessionRequest_CookieHeader{CookieHeader: h}}
	}
	return c.ValidateBatch(ctx, reqs)
}
