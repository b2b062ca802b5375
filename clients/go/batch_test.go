package sessionvalidator_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

func TestValidateBatch(t *testing.T) {
	c := liveClient(t, sessionvalidator.WithTimeout(5*time.Second))
	items, err := c.ValidateCookieHeaders(t.Context(),
		[]byte(header(t, "valid_object_user")), []byte(header(t, "bad_signature_tampered")), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []sessionvalidator.Verdict{sessionvalidator.VerdictValid, sessionvalidator.VerdictBadSignature, sessionvalidator.VerdictMissing}
	for i, item := range items {
		if item.Err != nil || item.Verdict != want[i] {
			t.Errorf("item %d: %v %v, want %s", i, item.Result, item.Err, want[i])
		}
	}
	if items[0].User == nil || items[0].User.ID != "u-100" {
		t.Errorf("item 0 user = %+v", items[0].User)
	}
}

func TestValidateBatchPerItemRateLimit(t *testing.T) {
	c := newClient(t, liveEnv(t, "SESSIONVALIDATOR_TEST_LIMITED_ADDR"), sessionvalidator.WithTimeout(5*time.Second))
	bad := []byte(header(t, "bad_signature_tampered"))
	items, err := c.ValidateCookieHeaders(t.Context(), []byte(header(t, "valid_scalar_user")), bad, bad)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].Err != nil || !items[0].Valid() {
		t.Errorf("the valid cookie lost its verdict: %v %v", items[0].Result, items[0].Err)
	}
	last := items[2]
	if last.Err == nil || last.Err.Code != codes.ResourceExhausted || last.Err.Reason != sessionvalidator.ReasonRateLimited ||
		!errors.Is(last.Err, sessionvalidator.ErrRateLimited) || last.Valid() || last.Err.RetryDelay <= 0 {
		t.Errorf("over the limit: %v %+v, want a RATE_LIMITED item error", last.Result, last.Err)
	}
}

func TestValidateBatchStoreDown(t *testing.T) {
	_, err := downClient(t).ValidateCookieHeaders(t.Context(), []byte(header(t, "valid_object_user")))
	if !errors.Is(err, sessionvalidator.ErrStoreUnavailable) {
		t.Errorf("got %v, want ErrStoreUnavailable for the whole call", err)
	}
}
