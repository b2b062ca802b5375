package sessionvalidator

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of the service's errors.
const ErrorDomain = "sessionvalidator.v1"

// The google.rpc.ErrorInfo reasons the service sends, found in [Error.Reason].
const (
	// ReasonStoreUnavailable: the session store refused, dropped or failed
	// the request (code UNAVAILABLE).
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
	// ReasonStoreTimeout: the session store did not answer in time (code
	// UNAVAILABLE).
	ReasonStoreTimeout = "STORE_TIMEOUT"
	// ReasonInternal: a bug in the service (code INTERNAL).
	ReasonInternal = "INTERNAL_ERROR"
)

// ErrStoreUnavailable matches (with [errors.Is]) every error with code
// UNAVAILABLE: the validator's session store could not be read (reason
// STORE_UNAVAILABLE or STORE_TIMEOUT) or the validator itself could not be
// reached (no reason). The validator could not decide; try again later.
var ErrStoreUnavailable = errors.New("sessionvalidator: session store unavailable")

// Error is the error of a call that got no verdict. Every error the Client
// returns is an *Error; use [errors.As] to read its code and reason, or
// [errors.Is] with:
//
//   - [ErrStoreUnavailable] for code UNAVAILABLE;
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

	status *status.Status
}

func newError(err error) *Error {
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Unknown, err.Error())
	}
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			e.Reason = info.GetReason()
			break
		}
	}
	return e
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
