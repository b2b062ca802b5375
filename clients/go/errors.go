package sessionvalidator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of the service's errors.
const ErrorDomain = "sessionvalidator.v1"

// The google.rpc.ErrorInfo reasons the service sends, found in [Error.Reason].
// They are derived from the contract's enum ErrorReason: on the wire a reason
// is the value's name without the ERROR_REASON_ prefix.
var (
	// ReasonStoreUnavailable: the session store refused, dropped or failed
	// the request (code UNAVAILABLE).
	ReasonStoreUnavailable = reasonName(svpb.ErrorReason_ERROR_REASON_STORE_UNAVAILABLE)
	// ReasonStoreTimeout: the session store did not answer in time (code
	// UNAVAILABLE).
	ReasonStoreTimeout = reasonName(svpb.ErrorReason_ERROR_REASON_STORE_TIMEOUT)
	// ReasonOverloaded: the validator is over its bound on work in progress
	// (code UNAVAILABLE; retried with backoff, an outage for the middleware).
	ReasonOverloaded = reasonName(svpb.ErrorReason_ERROR_REASON_OVERLOADED)
	// ReasonRateLimited: too many bad cookies from this caller (code
	// RESOURCE_EXHAUSTED; [Error.RetryDelay] says when to try again).
	ReasonRateLimited = reasonName(svpb.ErrorReason_ERROR_REASON_RATE_LIMITED)
	// ReasonBatchTooLarge: a batch over the item count or byte budget (code
	// INVALID_ARGUMENT).
	ReasonBatchTooLarge = reasonName(svpb.ErrorReason_ERROR_REASON_BATCH_TOO_LARGE)
	// ReasonMalformedRequest: the request body was not a protobuf message
	// (code INVALID_ARGUMENT).
	ReasonMalformedRequest = reasonName(svpb.ErrorReason_ERROR_REASON_MALFORMED_REQUEST)
	// ReasonInternal: a bug in the service (code INTERNAL).
	ReasonInternal = reasonName(svpb.ErrorReason_ERROR_REASON_INTERNAL_ERROR)
)

// The causes [Error.Cause] adds to the ErrorInfo reasons, for errors that
// carry none.
const (
	// CauseValidatorUnreachable: UNAVAILABLE without a reason, so the
	// validator itself could not be reached (down, wrong address, TLS
	// mismatch).
	CauseValidatorUnreachable = "VALIDATOR_UNREACHABLE"
	// CauseDeadlineExceeded: the call's deadline passed first.
	CauseDeadlineExceeded = "DEADLINE_EXCEEDED"
)

func reasonName(r svpb.ErrorReason) string {
	return strings.TrimPrefix(r.String(), "ERROR_REASON_")
}

// ErrStoreUnavailable matches (with [errors.Is]) every error with code
// UNAVAILABLE: the validator's session store could not be read (reason
// STORE_UNAVAILABLE or STORE_TIMEOUT), the validator is overloaded (reason
// OVERLOADED) or it could not be reached at all (no reason). The validator
// could not decide; try again later.
var ErrStoreUnavailable = errors.New("sessionvalidator: session store unavailable")

// ErrRateLimited matches (with [errors.Is]) every error with code
// RESOURCE_EXHAUSTED: the service refuses this caller's bad cookies for a
// while ([Error.RetryDelay]). The middleware answers 429.
var ErrRateLimited = errors.New("sessionvalidator: rate limited")

// Error is the error of a call that got no verdict. Every error the Client
// returns is an *Error; use [errors.As] to read its code and reason, or
// [errors.Is] with:
//
//   - [ErrStoreUnavailable] for code UNAVAILABLE;
//   - [ErrRateLimited] for code RESOURCE_EXHAUSTED;
//   - [context.DeadlineExceeded] for code DEADLINE_EXCEEDED (the client's
//     timeout or the context's deadline passed first);
//   - [context.Canceled] for code CANCELED.
//
// It also implements GRPCStatus, so [status.Code] and [status.FromError]
// see the original status.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the ErrorInfo reason from the service (ReasonStoreTimeout,
	// ...), or "" when the status carries none (such as a transport failure
	// or a deadline).
	Reason string
	// Message is the status message.
	Message string
	// RetryDelay is the google.rpc.RetryInfo delay the service sent (with
	// RESOURCE_EXHAUSTED), or 0.
	RetryDelay time.Duration

	status *status.Status
}

func newError(err error) *Error {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Unknown, err.Error())
	}
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain && e.Reason == "" {
				e.Reason = d.GetReason()
			}
		case *errdetails.RetryInfo:
			if d.GetRetryDelay() != nil {
				e.RetryDelay = d.GetRetryDelay().AsDuration()
			}
		}
	}
	return e
}

// Cause names why no verdict was reached, in the words the middleware logs:
// the ErrorInfo reason when the service sent one, [CauseValidatorUnreachable]
// for UNAVAILABLE without one, [CauseDeadlineExceeded] for a deadline, else
// the gRPC code's name (such as "Canceled").
func (e *Error) Cause() string {
	switch {
	case e.Reason != "":
		return e.Reason
	case e.Code == codes.Unavailable:
		return CauseValidatorUnreachable
	case e.Code == codes.DeadlineExceeded:
		return CauseDeadlineExceeded
	}
	return e.Code.String()
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("sessionvalidator: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("sessionvalidator: %s: %s", e.Code, e.Message)
}

// Is makes errors.Is match the sentinels listed on [Error].
func (e *Error) Is(target error) bool {
	switch target {
	case ErrStoreUnavailable:
		return e.Code == codes.Unavailable
	case ErrRateLimited:
		return e.Code == codes.ResourceExhausted
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	case context.Canceled:
		return e.Code == codes.Canceled
	}
	return false
}

// GRPCStatus returns the status the call ended with.
func (e *Error) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(e.Code, e.Message)
	}
	return e.status
}
