package sessionvalidator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	sessionvalidator "github.com/sessionvalidator/sessionvalidator/clients/go"
	svpb "github.com/sessionvalidator/sessionvalidator/clients/go/sessionvalidator/v1"
)

// The TLS options are tested against an in-process stand-in for the service
// (the real one in the harness listens in plaintext). It answers VALID with
// the client certificate's common name as the session id, so a test sees
// which certificate, if any, reached the server.

type mtlsEcho struct {
	svpb.UnimplementedSessionValidatorServer
}

func (mtlsEcho) ValidateSession(ctx context.Context, _ *svpb.ValidateSessionRequest) (*svpb.ValidateSessionResponse, error) {
	resp := &svpb.ValidateSessionResponse{Verdict: svpb.Verdict_VERDICT_VALID, Reason: svpb.Reason_REASON_SESSION_ACTIVE}
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			resp.SessionId = info.State.PeerCertificates[0].Subject.CommonName
		}
	}
	return resp, nil
}

type certFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate (CN "client-1"), all PEM, into a temporary directory.
func writeCerts(t *testing.T) certFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(cn+".crt", "CERTIFICATE", der), write(cn+".key", "PRIVATE KEY", keyDER)
	}
	f := certFiles{ca: write("ca.crt", "CERTIFICATE", caDER)}
	f.serverCert, f.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	f.clientCert, f.clientKey = leaf(3, "client-1", x509.ExtKeyUsageClientAuth, nil)
	return f
}

// serveTLS starts the stand-in with TLS; clientAuth says whether it demands
// a client certificate.
func serveTLS(t *testing.T, f certFiles, clientAuth tls.ClientAuthType) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(f.serverCert, f.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(f.ca)
	pool.AppendCertsFromPEM(caPEM)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: clientAuth, MinVersion: tls.VersionTLS12,
	})))
	svpb.RegisterSessionValidatorServer(srv, mtlsEcho{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestTLS(t *testing.T) {
	f := writeCerts(t)
	mtls := serveTLS(t, f, tls.RequireAndVerifyClientCert)
	tlsOnly := serveTLS(t, f, tls.NoClientCert)
	timeout := sessionvalidator.WithTimeout(5 * time.Second) // TLS handshakes on a busy CI box
	pair, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(f.ca)
	roots.AppendCertsFromPEM(caPEM)

	for _, tc := range []struct {
		name   string
		addr   string
		opt    sessionvalidator.Option
		wantCN string // "" means the call must fail
	}{
		{"mTLS files", mtls, sessionvalidator.WithTLSFiles(f.ca, f.clientCert, f.clientKey), "client-1"},
		{"mTLS config", mtls, sessionvalidator.WithTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}), "client-1"},
		{"TLS files, server-only", tlsOnly, sessionvalidator.WithTLSFiles(f.ca, "", ""), "-"},
		{"mTLS server, no client certificate", mtls, sessionvalidator.WithTLSFiles(f.ca, "", ""), ""},
		{"TLS server, untrusted CA", tlsOnly, sessionvalidator.WithTLS(nil), ""},
		{"TLS server, plaintext client", tlsOnly, sessionvalidator.WithInsecure(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.addr, tc.opt, timeout)
			res, err := c.ValidateSignedValue(t.Context(), "s:x.y")
			switch {
			case tc.wantCN == "" && err == nil:
				t.Fatalf("got %s, want an error", res.Verdict)
			case tc.wantCN == "":
				t.Logf("failed as expected: %v", err)
				return
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			cn := res.SessionID
			if cn == "" {
				cn = "-"
			}
			if cn != tc.wantCN {
				t.Errorf("server saw client certificate %q, want %q", cn, tc.wantCN)
			}
		})
	}
}

func TestTLSFilesErrors(t *testing.T) {
	f := writeCerts(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]sessionvalidator.Option{
		"missing CA file":        sessionvalidator.WithTLSFiles(filepath.Join(t.TempDir(), "nope.pem"), "", ""),
		"CA file without PEM":    sessionvalidator.WithTLSFiles(junk, "", ""),
		"CA file with a key":     sessionvalidator.WithTLSFiles(f.serverKey, "", ""),
		"certificate, no key":    sessionvalidator.WithTLSFiles(f.ca, f.clientCert, ""),
		"key that does not pair": sessionvalidator.WithTLSFiles(f.ca, f.clientCert, f.serverKey),
	} {
		if c, err := sessionvalidator.New("127.0.0.1:1", opt); err == nil {
			_ = c.Close()
			t.Errorf("%s: New succeeded, want an error", name)
		}
	}
}
