package sessionvalidator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// DefaultTimeout is the deadline New gives every call unless [WithTimeout]
// says otherwise: well inside the 200 ms that Envoy's ext_authz allows the
// whole check, so a slow validator is reported as such rather than as a
// gateway timeout.
const DefaultTimeout = 150 * time.Millisecond

// DefaultServiceConfig is the gRPC service config New installs: round_robin
// over every resolved address, and up to 3 attempts of a ValidateSession call
// that fails with UNAVAILABLE (the service's own word for "retry me") or with
// a CANCELLED the server sent: grpcio's server cancels the calls it has
// received but not started when it stops (a replica's SIGTERM); the calls
// are reads, so retrying them elsewhere is safe. A call the caller cancels
// itself is never retried.
// Retries share the call's deadline. The default (grpcio) server answers
// STORE_TIMEOUT with gRPC retry pushback (no retry: a slow store is slow for
// every replica), so a hung store shows up as STORE_TIMEOUT after one
// attempt; the native server kind
// (SESSIONVALIDATOR_SERVER=native) sends no pushback, so there a
// STORE_TIMEOUT is retried like any UNAVAILABLE while the deadline allows. A
// refused connection to the store shows up as STORE_UNAVAILABLE after up to
// three quick attempts, as does OVERLOADED. retryThrottling stops retrying
// altogether when most calls fail, so an outage does not triple the load on
// the validators. The same config is in every client
// (tests/vectors/client_conformance.json).
//
// A service config published by the resolver (DNS TXT record, xDS) takes
// precedence, as does one passed with [WithDialOptions] and
// [grpc.WithDefaultServiceConfig].
const DefaultServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
  "methodConfig": [{
    "name": [{"service": "sessionvalidator.v1.SessionValidator"}],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.01s",
      "maxBackoff": "0.05s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]
    }
  }]
}`

// DefaultKeepalive is what New uses: it pings a connection that has been quiet for 30 s and
// drops it when the ping is not answered within 10 s. Pings are sent only
// while a call is in flight (PermitWithoutStream false), which keeps within
// gRPC servers' default ping policy (no GOAWAY "too_many_pings").
func DefaultKeepalive() keepalive.ClientParameters {
	return keepalive.ClientParameters{
		Time:                30 * time.Second,
		Timeout:             10 * time.Second,
		PermitWithoutStream: false,
	}
}

// Client validates session cookies with a SessionValidator service. It is
// safe for concurrent use by multiple goroutines.
type Client struct {
	conn    *grpc.ClientConn
	rpc     svpb.SessionValidatorClient
	timeout time.Duration
}

// An Option configures a Client.
type Option func(*options)

type options struct {
	timeout     time.Duration
	creds       credentials.TransportCredentials
	tlsFiles    *tlsFiles
	dialOptions []grpc.DialOption
}

type tlsFiles struct{ ca, cert, key string }

// WithTimeout sets the deadline of each call (default [DefaultTimeout]). A
// context with an earlier deadline still wins. Zero or a negative duration
// means no deadline of the client's own: only the context's.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// WithTLS makes the client use TLS with cfg. Set cfg.Certificates (or
// GetClientCertificate) for mutual TLS and cfg.RootCAs to trust a private CA;
// a nil cfg means TLS with the system roots.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		o.creds, o.tlsFiles = credentials.NewTLS(cfg), nil
	}
}

// WithTLSFiles makes the client use TLS with PEM files, read when New runs.
// caFile is the CA bundle that signed the server's certificate ("" means the
// system roots). certFile and keyFile are the client's own certificate and
// key for mutual TLS; leave both "" for server-only TLS.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) { o.creds, o.tlsFiles = nil, &tlsFiles{caFile, certFile, keyFile} }
}

// WithInsecure makes the client talk plaintext HTTP/2. This is the default
// when no TLS option is given, meant for a validator on loopback, in the same
// pod, or behind a service mesh that provides mTLS.
func WithInsecure() Option {
	return func(o *options) { o.creds, o.tlsFiles = insecure.NewCredentials(), nil }
}

// WithDialOptions appends gRPC dial options after the client's defaults, so
// they can override them (for example [grpc.WithDefaultServiceConfig],
// [grpc.WithKeepaliveParams] or [grpc.WithStatsHandler] for telemetry).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// New returns a Client for the SessionValidator at target and starts
// connecting in the background; it does not wait for the connection, so an
// unreachable validator shows up as errors from calls, not from New.
//
// Defaults: a [DefaultTimeout] deadline per call, [DefaultServiceConfig]
// (round_robin, retries of UNAVAILABLE), keepalive pings after 30 s without
// activity during a call (10 s to answer), and plaintext unless a TLS option
// is given.
//
// target is a gRPC target. A bare "host:port" is resolved with the dns
// scheme ("dns:///host:port"), so round_robin balances across every address
// the name resolves to (use a headless Service in Kubernetes). Targets with a
// scheme, such as "unix:///run/sv.sock" or "passthrough:///10.0.0.1:50051",
// are used as given. An empty or malformed target (no port, a URL such as
// "http://host", blanks) is an error here, not a stream of failed calls.
func New(target string, opts ...Option) (*Client, error) {
	if err := CheckTarget(target); err != nil {
		return nil, err
	}
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	creds := o.creds
	if o.tlsFiles != nil {
		cfg, err := o.tlsFiles.config()
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(DefaultServiceConfig),
		grpc.WithKeepaliveParams(DefaultKeepalive()),
	}
	if authority := authorityFor(target); authority != "" {
		dialOptions = append(dialOptions, grpc.WithAuthority(authority))
	}
	dialOptions = append(dialOptions, o.dialOptions...)
	conn, err := grpc.NewClient(withScheme(target), dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("sessionvalidator: %w", err)
	}
	conn.Connect()
	return &Client{conn: conn, rpc: svpb.NewSessionValidatorClient(conn), timeout: o.timeout}, nil
}

// targetSchemes are the gRPC resolver schemes a target may name.
var targetSchemes = []string{"dns", "ipv4", "ipv6", "unix", "unix-abstract", "xds", "passthrough"}

// CheckTarget reports whether target is one New accepts: "host:port" (port
// 1-65535) or a gRPC target with a resolver scheme (dns, ipv4, ipv6, unix,
// unix-abstract, xds, passthrough) and something after it. The error names
// the target and what is expected.
func CheckTarget(target string) error {
	bad := func(why string) error {
		return fmt.Errorf("sessionvalidator: bad target %q: %s; want host:port (such as localhost:50051) or a gRPC target such as dns:///name:50051 or unix:///path", target, why)
	}
	if target == "" {
		return bad("it is empty (is the address variable set?)")
	}
	if strings.ContainsAny(target, " \t\r\n") {
		return bad("it contains blanks")
	}
	for _, scheme := range targetSchemes {
		if rest, ok := strings.CutPrefix(target, scheme+":"); ok {
			if strings.Trim(rest, "/") == "" {
				return bad("nothing follows the scheme")
			}
			return nil
		}
	}
	if i := strings.Index(target, "://"); i > 0 {
		return bad("it is a URL with scheme " + target[:i] + ", not a gRPC target")
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return bad("it has no port")
	}
	if host == "" {
		return bad("it has no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("the port is not a number from 1 to 65535")
	}
	return nil
}

// withScheme prefixes "dns:///" to a target that names no resolver scheme.
// grpc.NewClient does the same today; spelling it out keeps round_robin
// working even if a program changes gRPC's global default scheme.
// severalAddresses matches a target naming several addresses (ipv4:a,b or
// ipv6:a,b) and captures the first.
var severalAddresses = regexp.MustCompile(`^ipv[46]:(?:///)?([^,]+),`)

// authorityFor is the authority sent for target: its first address when it
// names several, else "" (the library's default). The default authority of
// "ipv4:a,b" holds the comma, which the service's native server kind
// (pygrpc-native) answers INTERNAL on every call
// (tests/vectors/client_conformance.json, "authority").
func authorityFor(target string) string {
	if m := severalAddresses.FindStringSubmatch(target); m != nil {
		return m[1]
	}
	return ""
}

func withScheme(target string) string {
	if strings.Contains(target, "://") {
		return target
	}
	if u, err := url.Parse(target); err == nil && u.Scheme != "" && resolver.Get(u.Scheme) != nil {
		return target // such as unix:relative/path
	}
	return "dns:///" + target
}

func (f *tlsFiles) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("sessionvalidator: reading CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("sessionvalidator: no PEM certificate in CA file %s", f.ca)
		}
	}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("sessionvalidator: WithTLSFiles needs both certFile and keyFile, or neither")
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("sessionvalidator: loading client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Close closes the connection. Calls in flight fail with codes.Canceled.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Validate sends req as it is and returns the service's verdict. The other
// Validate methods build req for you; use this one for full control over the
// request (a request with no credential is judged as one with no Cookie
// header).
//
// The call's deadline is the client's timeout or ctx's, whichever is earlier.
// A non-nil error is always an [*Error] and never stands for a verdict.
func (c *Client) Validate(ctx context.Context, req *svpb.ValidateSessionRequest) (*Result, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	resp, err := c.rpc.ValidateSession(ctx, req)
	if err != nil {
		return nil, newError(err)
	}
	return newResult(resp), nil
}

// ValidateCookieHeader validates a Cookie request header given as the raw
// bytes that arrived on the wire (several Cookie headers joined with "; " in
// arrival order). The bytes need not be UTF-8: the service reads them as
// latin-1, as Node does. An empty header is judged as no Cookie header.
func (c *Client) ValidateCookieHeader(ctx context.Context, header []byte) (*Result, error) {
	if header == nil {
		header = []byte{}
	}
	return c.Validate(ctx, &svpb.ValidateSessionRequest{
		Credential: &svpb.ValidateSessionRequest_CookieHeader{CookieHeader: header},
	})
}

// ValidateCookieHeaderString is [Client.ValidateCookieHeader] for a header
// held as a Go string. The string's bytes are sent unchanged (not as text),
// which is what a header read by net/http or fasthttp holds.
func (c *Client) ValidateCookieHeaderString(ctx context.Context, header string) (*Result, error) {
	return c.ValidateCookieHeader(ctx, []byte(header))
}

// ValidateCookieHeaderText validates a Cookie header held as text, the way
// Node holds req.headers.cookie and ASGI/WSGI servers or a JSON payload pass
// it on: latin-1 decoded, one character per header byte. Each character
// U+0000-U+00FF is sent as that one byte. Text with a character above U+00FF
// cannot have come from header bytes (Node's http refuses to write it), so it
// is refused without a call, with an *Error of code InvalidArgument; so is
// text that is not valid UTF-8. This is the rule of every SessionValidator
// client (tests/vectors/client_conformance.json). A header read by net/http
// is raw bytes already: use [Client.ValidateCookieHeaderString] for it.
func (c *Client) ValidateCookieHeaderText(ctx context.Context, text string) (*Result, error) {
	raw, err := latin1(text)
	if err != nil {
		return nil, err
	}
	return c.ValidateCookieHeader(ctx, raw)
}

func latin1(text string) ([]byte, error) {
	if !utf8.ValidString(text) {
		return nil, invalidArgument("cookie header text is not valid UTF-8; send raw header bytes with ValidateCookieHeader")
	}
	raw := make([]byte, 0, len(text))
	for _, r := range text {
		if r > 0xFF {
			return nil, invalidArgument("cookie header text has a character above U+00FF, which no header bytes decode to; send raw header bytes with ValidateCookieHeader")
		}
		raw = append(raw, byte(r))
	}
	return raw, nil
}

func invalidArgument(msg string) *Error {
	st := status.New(codes.InvalidArgument, msg)
	return &Error{Code: st.Code(), Message: st.Message(), status: st}
}

// ValidateSignedValue validates just the cookie's value, such as
// "s%3A<sid>.<signature>" or "s:<sid>.<signature>", for callers that carry
// the session as a token. The service trims, unquotes and percent-decodes it
// like a value in a header.
//
// value is text and must be valid UTF-8 (an *Error with code
// InvalidArgument says otherwise, without a call). A value cut from raw
// header bytes that are not UTF-8 cannot be sent this way: forward the whole
// header with [Client.ValidateCookieHeader].
func (c *Client) ValidateSignedValue(ctx context.Context, value string) (*Result, error) {
	if !utf8.ValidString(value) {
		return nil, invalidArgument("signed value is not valid UTF-8; send the raw Cookie header with ValidateCookieHeader")
	}
	return c.Validate(ctx, &svpb.ValidateSessionRequest{
		Credential: &svpb.ValidateSessionRequest_SignedValue{SignedValue: value},
	})
}

// ValidateRequest validates the Cookie header of an incoming HTTP request:
// every Cookie header value, joined with "; " in order, sent as raw bytes.
// A request without a Cookie header sends an empty header (VERDICT_MISSING).
// It never uses r.Cookie or r.Cookies, whose parsing differs from
// express-session's.
func (c *Client) ValidateRequest(ctx context.Context, r *http.Request) (*Result, error) {
	return c.ValidateCookieHeaderString(ctx, strings.Join(r.Header.Values("Cookie"), "; "))
}
