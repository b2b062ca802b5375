package sessionvalidator_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"testing"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// tokenVectors is the harness's SESSIONVALIDATOR_TEST_TOKENS file
// (tests/support/token_vectors.py).
type tokenVectors struct {
	JWKSURL  string            `json:"jwks_url"`
	Issuer   string            `json:"issuer"`
	Audience string            `json:"audience"`
	Refused  map[string]string `json:"refused"`
}

func loadTokenVectors(t *testing.T) tokenVectors {
	t.Helper()
	raw, err := os.ReadFile(liveEnv(t, "SESSIONVALIDATOR_TEST_TOKENS"))
	if err != nil {
		t.Fatal(err)
	}
	var v tokenVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// issueToken asks the live service for a token for the valid_object_user vector's cookie.
func issueToken(t *testing.T, c *sessionvalidator.Client) ([]byte, *sessionvalidator.Result) {
	t.Helper()
	cookie, _ := headerBytes(t, vector(t, "valid_object_user"))
	res, err := c.Validate(context.Background(), &svpb.ValidateSessionRequest{
		Credential: &svpb.ValidateSessionRequest_CookieHeader{CookieHeader: cookie},
		IssueToken: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cookie, res
}

func TestIssuedTokenVerifiesWithGoJoseAndTheJWKSOverHTTP(t *testing.T) {
	v := loadTokenVectors(t)
	c := liveClient(t)
	cookie, res := issueToken(t, c)
	if res.Token == "" || strings.Contains(res.Token, res.SessionID) {
		t.Fatalf("token %q: empty, or holds the session id", res.Token)
	}
	claims, err := sessionvalidator.NewTokenVerifier(v.JWKSURL, v.Issuer, v.Audience).Verify(context.Background(), res.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != res.User.ID || claims.Issuer != v.Issuer || claims.SidTag == "" {
		t.Fatalf("claims %+v for user %q", claims, res.User.ID)
	}
	if claims.Expiry.Time().After(res.ExpireTime) {
		t.Fatalf("token outlives the session: %v > %v", claims.Expiry.Time(), res.ExpireTime)
	}
	// Not asked for: none.
	plain, err := c.ValidateCookieHeader(context.Background(), cookie)
	if err != nil || plain.Token != "" {
		t.Fatalf("without IssueToken: %q, %v", plain.Token, err)
	}
}

func TestForgedAndStaleTokensAreRefused(t *testing.T) {
	v := loadTokenVectors(t)
	want := []string{"alg_none", "expired", "hs256_with_the_public_key", "no_subject", "not_yet_valid",
		"retired_and_removed_key", "tampered_claims", "unknown_kid", "wrong_audience", "wrong_issuer"}
	var got []string
	for name := range v.Refused {
		got = append(got, name)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("refused vectors %v, want %v", got, want)
	}
	verifier := sessionvalidator.NewTokenVerifier(v.JWKSURL, v.Issuer, v.Audience)
	for _, name := range want {
		if _, err := verifier.Verify(context.Background(), v.Refused[name]); !errors.Is(err, sessionvalidator.ErrInvalidToken) {
			t.Errorf("%s: got %v, want ErrInvalidToken", name, err)
		}
	}
	for _, garbage := range []string{"", "a.b", "a.b.c", "not a token"} {
		if _, err := verifier.Verify(context.Background(), garbage); !errors.Is(err, sessionvalidator.ErrInvalidToken) {
			t.Errorf("%q: got %v, want ErrInvalidToken", garbage, err)
		}
	}
}

func TestTokenKeysThatCannotBeFetchedAreNotAVerdict(t *testing.T) {
	v := loadTokenVectors(t)
	_, res := issueToken(t, liveClient(t))
	url := "http://" + liveEnv(t, "SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR") + "/.well-known/jwks.json"
	_, err := sessionvalidator.NewTokenVerifier(url, v.Issuer, v.Audience).Verify(context.Background(), res.Token)
	if !errors.Is(err, sessionvalidator.ErrTokenKeysUnavailable) {
		t.Fatalf("got %v, want ErrTokenKeysUnavailable", err)
	}
	notFound := strings.Replace(v.JWKSURL, "/.well-known/jwks.json", "/no-such-path", 1)
	_, err = sessionvalidator.NewTokenVerifier(notFound, v.Issuer, v.Audience).Verify(context.Background(), res.Token)
	if !errors.Is(err, sessionvalidator.ErrTokenKeysUnavailable) {
		t.Fatalf("404: got %v, want ErrTokenKeysUnavailable", err)
	}
}
