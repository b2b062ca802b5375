package sessionvalidator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
)

// conformance is tests/vectors/client_conformance.json: what every client
// (Go, Node, Python) must do the same way.
type conformance struct {
	Description      json.RawMessage `json:"description"`
	ServiceConfig    json.RawMessage `json:"service_config"`
	DefaultTimeoutMS int             `json:"default_timeout_ms"`
	Keepalive        struct {
		TimeMS    int `json:"time_ms"`
		TimeoutMS int `json:"timeout_ms"`
	} `json:"keepalive"`
	// Authority is checked by TestAuthorityFor (scheme_internal_test.go: authorityFor is unexported).
	Authority json.RawMessage `json:"authority"`
	Targets   struct {
		Comment  string   `json:"comment"`
		Schemes  []string `json:"schemes"`
		Accepted []string `json:"accepted"`
		Refused  []string `json:"refused"`
	} `json:"targets"`
	HeaderText struct {
		Comment string `json:"comment"`
		Cases   []struct {
			Name    string `json:"name"`
			Vector  string `json:"vector"`
			Text    string `json:"text"`
			Verdict string `json:"verdict"`
			Refused bool   `json:"refused"`
		} `json:"cases"`
	} `json:"header_text"`
	Middleware struct {
		Comment json.RawMessage              `json:"comment"`
		Bodies  map[string]map[string]string `json:"bodies"`
		Cases   []struct {
			Name       string            `json:"name"`
			Server     string            `json:"server"`
			Vector     *string           `json:"vector"`
			Options    []string          `json:"options"`
			Repeat     int               `json:"repeat"`
			Status     int               `json:"status"`
			User       *string           `json:"user"`
			Body       map[string]string `json:"body"`
			RetryAfter bool              `json:"retry_after"`
			Log        string            `json:"log"`
		} `json:"cases"`
	} `json:"middleware"`
	UnavailableCauses json.RawMessage `json:"unavailable_causes"`
}

func loadConformance(t *testing.T) conformance {
	t.Helper()
	raw, err := os.ReadFile(liveEnv(t, "SESSIONVALIDATOR_TEST_CONFORMANCE"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c conformance
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("client_conformance.json: %v", err)
	}
	return c
}

func TestConformanceDefaults(t *testing.T) {
	c := loadConformance(t)
	var want, got any
	if err := json.Unmarshal(c.ServiceConfig, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(sessionvalidator.DefaultServiceConfig), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultServiceConfig = %v, want %v", got, want)
	}
	if sessionvalidator.DefaultTimeout != time.Duration(c.DefaultTimeoutMS)*time.Millisecond {
		t.Errorf("DefaultTimeout = %v, want %d ms", sessionvalidator.DefaultTimeout, c.DefaultTimeoutMS)
	}
	ka := sessionvalidator.DefaultKeepalive()
	if ka.Time != time.Duration(c.Keepalive.TimeMS)*time.Millisecond || ka.Timeout != time.Duration(c.Keepalive.TimeoutMS)*time.Millisecond {
		t.Errorf("keepalive = %+v, want %+v", ka, c.Keepalive)
	}
}

func TestConformanceTargets(t *testing.T) {
	c := loadConformance(t)
	for _, target := range c.Targets.Accepted {
		if err := sessionvalidator.CheckTarget(target); err != nil {
			t.Errorf("CheckTarget(%q) = %v, want accepted", target, err)
		}
	}
	for _, target := range c.Targets.Refused {
		err := sessionvalidator.CheckTarget(target)
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(target)) {
			t.Errorf("CheckTarget(%q) = %v, want an error naming the target", target, err)
		}
		if sv, err := sessionvalidator.New(target); err == nil {
			_ = sv.Close()
			t.Errorf("New(%q) succeeded, want an error", target)
		}
	}
}

func TestConformanceHeaderText(t *testing.T) {
	c := loadConformance(t)
	sv := liveClient(t, sessionvalidator.WithTimeout(5*time.Second))
	for _, tc := range c.HeaderText.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			text := tc.Text
			if tc.Vector != "" {
				raw, ok := headerBytes(t, vector(t, tc.Vector))
				if !ok {
					t.Fatalf("vector %s has no header", tc.Vector)
				}
				runes := make([]rune, len(raw))
				for i, b := range raw {
					runes[i] = rune(b) // latin-1, as Node decodes header bytes
				}
				text = string(runes)
			}
			res, err := sv.ValidateCookieHeaderText(t.Context(), text)
			if tc.Refused {
				var e *sessionvalidator.Error
				if !errors.As(err, &e) || e.Code != codes.InvalidArgument {
					t.Fatalf("got %v, %v; want an InvalidArgument error", res, err)
				}
				return
			}
			if err != nil || res.Verdict.String() != tc.Verdict {
				t.Fatalf("got %v, %v; want %s", res, err, tc.Verdict)
			}
		})
	}
}

// logBuffer collects what the middleware logs.
type logBuffer struct{ bytes.Buffer }

func TestConformanceMiddleware(t *testing.T) {
	c := loadConformance(t)
	servers := map[string]string{
		"live":        liveEnv(t, envAddr),
		"down":        liveEnv(t, envDownAddr),
		"limited":     liveEnv(t, "SESSIONVALIDATOR_TEST_LIMITED_ADDR"),
		"unreachable": liveEnv(t, "SESSIONVALIDATOR_TEST_UNREACHABLE_ADDR"),
	}
	for _, tc := range c.Middleware.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			var logs logBuffer
			opts := []sessionvalidator.MiddlewareOption{
				sessionvalidator.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
			}
			for _, o := range tc.Options {
				switch o {
				case "anonymous_sessions":
					opts = append(opts, sessionvalidator.AllowAnonymousSessions())
				case "expose_verdict":
					opts = append(opts, sessionvalidator.ExposeVerdict())
				default:
					t.Fatalf("unknown option %q", o)
				}
			}
			addr, ok := servers[tc.Server]
			if !ok {
				t.Fatalf("unknown server %q", tc.Server)
			}
			// A long deadline: a slow, loaded machine must not turn a verdict into a 503.
			srv := httptest.NewServer(newClient(t, addr, sessionvalidator.WithTimeout(5*time.Second)).Middleware(opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, _ := sessionvalidator.UserFromContext(r.Context())
				var id *string
				if user != nil {
					id = &user.ID
				}
				_ = json.NewEncoder(w).Encode(map[string]*string{"user": id})
			})))
			t.Cleanup(srv.Close)
			var cookie string
			if tc.Vector != nil {
				cookie = header(t, *tc.Vector)
			}
			var resp *http.Response
			var body []byte
			for range max(tc.Repeat, 1) {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				if cookie != "" {
					req.Header["Cookie"] = []string{cookie}
				}
				resp, err = srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if resp.StatusCode != tc.Status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.Status)
			}
			if tc.Status == http.StatusOK {
				var got map[string]*string
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got["user"], tc.User) {
					t.Errorf("user %v, want %v", got["user"], tc.User)
				}
				return
			}
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			if !reflect.DeepEqual(got, tc.Body) {
				t.Errorf("body %v, want %v", got, tc.Body)
			}
			if len(tc.Options) == 0 && !reflect.DeepEqual(got, c.Middleware.Bodies[strconv.Itoa(tc.Status)]) {
				t.Errorf("body %v, want the table's %v", got, c.Middleware.Bodies[strconv.Itoa(tc.Status)])
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			ra := resp.Header.Get("Retry-After")
			if n, err := strconv.Atoi(ra); tc.RetryAfter && (err != nil || n < 1) {
				t.Errorf("Retry-After %q, want whole seconds >= 1", ra)
			} else if !tc.RetryAfter && ra != "" {
				t.Errorf("Retry-After %q on a %d", ra, tc.Status)
			}
			if tc.Log != "" {
				if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), tc.Log) {
					t.Errorf("log %q, want a warning naming %s", logs.String(), tc.Log)
				}
			}
			if cookie != "" && strings.Contains(logs.String(), cookie) {
				t.Errorf("the log holds the cookie: %q", logs.String())
			}
		})
	}
}
