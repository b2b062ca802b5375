package sessionvalidator

import (
	"time"

	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// Verdict is the outcome of validating a credential. The enum is open: treat
// any value you do not know as "not valid", as [Result.Valid] does.
type Verdict = svpb.Verdict

// Reason is the finer cause behind a Verdict (svpb.Reason_REASON_*). The enum
// is open: fall back to the Verdict for reasons you do not know.
type Reason = svpb.Reason

// The verdicts the service sends.
const (
	VerdictValid        = svpb.Verdict_VERDICT_VALID
	VerdictBadSignature = svpb.Verdict_VERDICT_BAD_SIGNATURE
	VerdictMalformed    = svpb.Verdict_VERDICT_MALFORMED
	VerdictExpired      = svpb.Verdict_VERDICT_EXPIRED
	VerdictMissing      = svpb.Verdict_VERDICT_MISSING
)

// Result is the service's verdict on one credential.
type Result struct {
	// Verdict is the outcome; only VerdictValid is a live session.
	Verdict Verdict
	// Reason is the finer cause, such as REASON_SIGNATURE_MISMATCH.
	Reason Reason
	// SessionID is the unsigned session id, set once a configured secret
	// verified the signature (also for missing and expired sessions).
	SessionID string
	// Authenticated is true when the session holds a logged-in Passport user.
	// It is only ever true for a valid session.
	Authenticated bool
	// User is the logged-in user. The service sends one only with
	// Authenticated; it is nil otherwise.
	User *User
	// ExpireTime is when the session expires; zero when the session has no
	// expiry (a browser-session cookie in a store without TTL).
	ExpireTime time.Time
	// CookieName is the name of the cookie the service judged.
	CookieName string
	// Token is the session token the request asked for (IssueToken), or "".
	// Verify it with a [TokenVerifier]; it is valid until its exp, even after
	// a logout.
	Token string
	// Response is the response as received, for fields added to the
	// contract after this package was written.
	Response *svpb.ValidateSessionResponse
}

// User is the Passport user of a session.
type User struct {
	// ID is `passport.user` when it is a scalar, else the record's id.
	ID string
	// Username, DisplayName and Email come from the user record.
	Username    string
	DisplayName string
	Email       string
	// Roles are the record's roles (or single role).
	Roles []string
	// Attributes is the whole user record as stored (nil when there is
	// none), decoded as encoding/json would decode it into a map.
	Attributes map[string]any
}

// Valid reports whether the credential names a live session. It is false for
// every other verdict, including ones this package does not know.
func (r *Result) Valid() bool {
	return r != nil && r.Verdict == VerdictValid
}

// SecretIndex returns the position, in the service's secret list, of the
// secret that verified the signature (0 is the current signing secret; more
// means a secret being rotated out). ok is false when no secret verified it.
func (r *Result) SecretIndex() (index uint32, ok bool) {
	if r == nil || r.Response == nil || r.Response.SecretIndex == nil {
		return 0, false
	}
	return r.Response.GetSecretIndex(), true
}

func newResult(resp *svpb.ValidateSessionResponse) *Result {
	r := &Result{
		Verdict:       resp.GetVerdict(),
		Reason:        resp.GetReason(),
		SessionID:     resp.GetSessionId(),
		Authenticated: resp.GetAuthenticated(),
		CookieName:    resp.GetCookieName(),
		Token:         resp.GetToken(),
		Response:      resp,
	}
	if resp.ExpireTime != nil {
		r.ExpireTime = resp.GetExpireTime().AsTime()
	}
	if u := resp.GetUser(); u != nil {
		r.User = &User{
			ID:          u.GetId(),
			Username:    u.GetUsername(),
			DisplayName: u.GetDisplayName(),
			Email:       u.GetEmail(),
			Roles:       u.GetRoles(),
		}
		if u.Attributes != nil {
			r.User.Attributes = u.GetAttributes().AsMap()
		}
	}
	return r
}
