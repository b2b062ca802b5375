package sessionvalidator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Session tokens are short-lived JWTs the validator signs for a valid session
// of a logged-in user (ValidateSessionRequest.IssueToken, or a gateway's
// x-session-token header). A TokenVerifier checks one offline, with go-jose
// and the validator's JWKS, without calling the validator.

// ErrInvalidToken is wrapped by every error of [TokenVerifier.Verify] that
// refuses a token: bad signature, unknown key, wrong algorithm, issuer or
// audience, expired or not yet valid, a claim missing.
var ErrInvalidToken = errors.New("sessionvalidator: invalid session token")

// ErrTokenKeysUnavailable is wrapped when the JWKS could not be fetched:
// nothing was decided about the token.
var ErrTokenKeysUnavailable = errors.New("sessionvalidator: session token keys unavailable")

// TokenAlgorithms are the algorithms the validator signs with; tokens with any
// other (none, HMAC) are refused before a key is looked at.
var TokenAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256}

// SessionClaims are the claims of a verified session token.
type SessionClaims struct {
	jwt.Claims
	// SidTag is the keyed hash of the session id the gateways send as
	// x-session-sid-tag (never the id itself).
	SidTag            string         `json:"sid_tag,omitempty"`
	PreferredUsername string         `json:"preferred_username,omitempty"`
	Name              string         `json:"name,omitempty"`
	Email             string         `json:"email,omitempty"`
	Roles             []string       `json:"roles,omitempty"`
	Attributes        map[string]any `json:"attributes,omitempty"`
}

// TokenVerifier verifies session tokens with the keys at a JWKS URL (the
// validator's /.well-known/jwks.json on its forward-auth port). The key set is
// cached for CacheFor and fetched again at once when a token names a key the
// cached set lacks, so a key rotation never fails a live session. Safe for
// concurrent use.
type TokenVerifier struct {
	url      string
	issuer   string
	audience string
	// CacheFor is how long a fetched key set is used (default 5 minutes, the
	// validator's default max-age).
	CacheFor time.Duration
	// Leeway is the clock skew tolerated on exp and nbf (default 0).
	Leeway time.Duration
	// HTTPClient fetches the key set (default: a client with a 2 s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

// NewTokenVerifier returns a verifier for the tokens of one validator.
func NewTokenVerifier(jwksURL, issuer, audience string) *TokenVerifier {
	return &TokenVerifier{
		url:        jwksURL,
		issuer:     issuer,
		audience:   audience,
		CacheFor:   5 * time.Minute,
		HTTPClient: &http.Client{Timeout: 2 * time.Second},
		Now:        time.Now,
	}
}

// Verify returns the claims of a valid token. Its errors wrap
// [ErrInvalidToken] or [ErrTokenKeysUnavailable].
func (v *TokenVerifier) Verify(ctx context.Context, token string) (*SessionClaims, error) {
	parsed, err := jwt.ParseSigned(token, TokenAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(parsed.Headers) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrInvalidToken, len(parsed.Headers))
	}
	header := parsed.Headers[0]
	key, err := v.key(ctx, header.KeyID)
	if err != nil {
		return nil, err
	}
	if key.Algorithm != header.Algorithm {
		return nil, fmt.Errorf("%w: key %q is for %s, not %s", ErrInvalidToken, key.KeyID, key.Algorithm, header.Algorithm)
	}
	claims := &SessionClaims{}
	if err := parsed.Claims(key.Key, claims); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	// go-jose skips the time checks of absent claims: the validator always sets them.
	if claims.Subject == "" || claims.ID == "" || claims.Expiry == nil || claims.NotBefore == nil || claims.IssuedAt == nil {
		return nil, fmt.Errorf("%w: sub, jti, exp, nbf and iat are required", ErrInvalidToken)
	}
	expected := jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.audience}, Time: v.Now()}
	if err := claims.Claims.ValidateWithLeeway(expected, v.Leeway); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return claims, nil
}

// key returns the published key named kid, fetching the set when the cached
// one is stale or lacks it.
func (v *TokenVerifier) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fresh := v.keys != nil && v.Now().Sub(v.fetched) < v.CacheFor
	if fresh {
		if found := v.keys.Key(kid); len(found) == 1 {
			return &found[0], nil
		}
	}
	keys, err := v.fetch(ctx)
	if err != nil {
		return nil, err
	}
	v.keys, v.fetched = keys, v.Now()
	found := keys.Key(kid)
	if len(found) != 1 {
		return nil, fmt.Errorf("%w: no published key has kid %q", ErrInvalidToken, kid)
	}
	return &found[0], nil
}

func (v *TokenVerifier) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenKeysUnavailable, err)
	}
	resp, err := v.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenKeysUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s answered %d", ErrTokenKeysUnavailable, v.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokenKeysUnavailable, err)
	}
	keys := &jose.JSONWebKeySet{}
	if err := json.Unmarshal(body, keys); err != nil {
		return nil, fmt.Errorf("%w: the key set does not parse: %v", ErrTokenKeysUnavailable, err)
	}
	return keys, nil
}
