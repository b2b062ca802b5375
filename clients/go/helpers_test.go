package sessionvalidator_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"sync"
	"testing"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

// The harness (tests/harness.py) starts redis and the real service and sets
// these variables. Live tests fail without them (skip them with -short).
const (
	envAddr     = "SESSIONVALIDATOR_TEST_ADDR"
	envDownAddr = "SESSIONVALIDATOR_TEST_DOWN_ADDR"
	envVectors  = "SESSIONVALIDATOR_TEST_VECTORS"
)

// liveEnv returns a harness variable, or fails the test with how to run it.
func liveEnv(t *testing.T, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the live service; skipped with -short")
	}
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: this test needs a live SessionValidator. From the repository root run\n"+
			"  .venv/bin/python tests/harness.py -- bash -c 'cd clients/go && go test ./...'\n"+
			"or pass -short to skip the live tests.", name)
	}
	return v
}

// newClient returns a Client for addr that is closed when the test ends.
func newClient(t *testing.T, addr string, opts ...sessionvalidator.Option) *sessionvalidator.Client {
	t.Helper()
	c, err := sessionvalidator.New(addr, opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// liveClient is a Client for the seeded service.
func liveClient(t *testing.T, opts ...sessionvalidator.Option) *sessionvalidator.Client {
	t.Helper()
	return newClient(t, liveEnv(t, envAddr), opts...)
}

// downClient is a Client for the service whose store is down.
func downClient(t *testing.T, opts ...sessionvalidator.Option) *sessionvalidator.Client {
	t.Helper()
	return newClient(t, liveEnv(t, envDownAddr), opts...)
}

// vectorFile is tests/vectors/validate_session.json. Unknown fields fail the
// decoding, so an expectation added to the vectors cannot go unchecked here.
type vectorFile struct {
	Description json.RawMessage `json:"description"`
	Settings    json.RawMessage `json:"settings"`
	Sessions    json.RawMessage `json:"sessions"`
	Users       json.RawMessage `json:"users"`
	Cases       []vectorCase    `json:"cases"`
}

type vectorCase struct {
	Name    string        `json:"name"`
	Request vectorRequest `json:"request"`
	Expect  vectorExpect  `json:"expect"`
}

type vectorRequest struct {
	CookieHeaderText *string `json:"cookie_header_text"`
	CookieHeaderB64  *string `json:"cookie_header_b64"`
	SignedValue      *string `json:"signed_value"`
}

type vectorExpect struct {
	Verdict       string      `json:"verdict"`
	Reason        string      `json:"reason"`
	SessionID     *string     `json:"session_id"`
	Authenticated *bool       `json:"authenticated"`
	SecretIndex   *uint32     `json:"secret_index"`
	User          *vectorUser `json:"user"`
	HasExpireTime *bool       `json:"has_expire_time"`
	// Attributes is the whole user record the service sends (secrets left out).
	Attributes map[string]any `json:"attributes"`
}

type vectorUser struct {
	ID          *string   `json:"id"`
	Username    *string   `json:"username"`
	DisplayName *string   `json:"display_name"`
	Email       *string   `json:"email"`
	Roles       *[]string `json:"roles"`
}

var (
	vectorsOnce sync.Once
	vectors     vectorFile
	vectorsErr  error
)

// loadVectors reads the harness's vector file once per test binary.
func loadVectors(t *testing.T) []vectorCase {
	t.Helper()
	path := liveEnv(t, envVectors)
	vectorsOnce.Do(func() {
		var data []byte
		data, vectorsErr = os.ReadFile(path)
		if vectorsErr != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		vectorsErr = dec.Decode(&vectors)
	})
	if vectorsErr != nil {
		t.Fatalf("reading vectors %s: %v", path, vectorsErr)
	}
	if len(vectors.Cases) == 0 {
		t.Fatalf("no cases in %s", path)
	}
	return vectors.Cases
}

// vector returns the named case.
func vector(t *testing.T, name string) vectorCase {
	t.Helper()
	for _, c := range loadVectors(t) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no vector named %q", name)
	return vectorCase{}
}

// headerBytes returns a case's Cookie header as the bytes on the wire, and
// false for cases that carry no header. Text is the header decoded as
// latin-1, so it is encoded back the same way.
func headerBytes(t *testing.T, c vectorCase) ([]byte, bool) {
	t.Helper()
	switch {
	case c.Request.CookieHeaderB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*c.Request.CookieHeaderB64)
		if err != nil {
			t.Fatalf("%s: cookie_header_b64: %v", c.Name, err)
		}
		return b, true
	case c.Request.CookieHeaderText != nil:
		text := *c.Request.CookieHeaderText
		b := make([]byte, 0, len(text))
		for _, r := range text {
			if r > 0xFF {
				t.Fatalf("%s: cookie_header_text has %U, which is not latin-1", c.Name, r)
			}
			b = append(b, byte(r))
		}
		return b, true
	}
	return nil, false
}

// header returns a named case's Cookie header bytes as a string.
func header(t *testing.T, name string) string {
	t.Helper()
	b, ok := headerBytes(t, vector(t, name))
	if !ok {
		t.Fatalf("vector %q has no Cookie header", name)
	}
	return string(b)
}

// blackhole returns the address of a TCP listener that accepts connections
// and never says a word: a server that hangs before HTTP/2 starts.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
