package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// handshake listens on 127.0.0.1 with server, dials it with client and
// runs one TLS handshake, returning each side's result. The client's
// connection state is returned only if its handshake succeeded.
func handshake(t *testing.T, server, client *tls.Config) (state tls.ConnectionState, clientErr, serverErr error) {
	t.Helper()
	// A bound on everything, so that a broken handshake fails rather than hangs.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		served <- tls.Server(c, server).HandshakeContext(ctx)
	}()

	d := tls.Dialer{Config: client}
	c, clientErr := d.DialContext(ctx, "tcp", ln.Addr().String())
	if clientErr == nil {
		state = c.(*tls.Conn).ConnectionState()
		c.Close()
	}
	// The server sees the client's alert or close; if the client never
	// connected, closing the listener ends Accept.
	ln.Close()
	return state, clientErr, <-served
}

func TestHandshake(t *testing.T) {
	ca := newCA(t, "hil bench sim")
	server, err := ca.ServerTLS("pc", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		protos    []string // client's ALPN offer
		wantProto string
	}{
		{"plain", nil, ""},
		{"grpc", []string{"h2"}, "h2"},
		{"http/1.1", []string{"http/1.1"}, ""}, // a server offering h2 lets it fall back
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := ca.ClientTLS()
			client.NextProtos = tt.protos
			state, clientErr, serverErr := handshake(t, server, client)
			if clientErr != nil || serverErr != nil {
				t.Fatalf("handshake failed: client: %v; server: %v", clientErr, serverErr)
			}
			if state.NegotiatedProtocol != tt.wantProto {
				t.Errorf("negotiated protocol %q, want %q", state.NegotiatedProtocol, tt.wantProto)
			}
			if state.Version < tls.VersionTLS12 {
				t.Errorf("TLS version %x, want at least 1.2", state.Version)
			}
			if cn := state.PeerCertificates[0].Subject.CommonName; cn != "pc" {
				t.Errorf("peer certificate CN %q, want %q", cn, "pc")
			}
		})
	}
}

func TestHandshakeFails(t *testing.T) {
	ca, other := newCA(t, "hil bench sim"), newCA(t, "someone else")
	tests := []struct {
		name   string
		hosts  []string // in the server certificate
		client *tls.Config
		want   any // pointer to the x509 error type the client must see
	}{
		{"wrong IP", []string{"127.0.0.2"}, ca.ClientTLS(), new(x509.HostnameError)},
		{"DNS name only", []string{"localhost"}, ca.ClientTLS(), new(x509.HostnameError)},
		{"other CA", []string{"127.0.0.1"}, other.ClientTLS(), new(x509.UnknownAuthorityError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, err := ca.ServerTLS("pc", tt.hosts...)
			if err != nil {
				t.Fatal(err)
			}
			_, clientErr, _ := handshake(t, server, tt.client)
			if clientErr == nil {
				t.Fatal("handshake succeeded, want it to fail")
			}
			if !errors.As(clientErr, tt.want) {
				t.Errorf("client error %v (%T), want a %T", clientErr, clientErr, tt.want)
			}
		})
	}
}

func TestIssueSANs(t *testing.T) {
	ca := newCA(t, "hil bench sim")
	tests := []struct {
		name    string
		hosts   []string
		wantIPs []string
		wantDNS []string
	}{
		{"IPv4", []string{"127.0.0.1"}, []string{"127.0.0.1"}, nil},
		{"IPv6", []string{"::1"}, []string{"::1"}, nil},
		{"DNS", []string{"pc.bench.local"}, nil, []string{"pc.bench.local"}},
		{
			"mixed, in order",
			[]string{"10.0.0.5", "localhost", "fe80::1", "pc"},
			[]string{"10.0.0.5", "fe80::1"},
			[]string{"localhost", "pc"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue("pc", tt.hosts...)
			if err != nil {
				t.Fatal(err)
			}
			cert := parseCert(t, certPEM)
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IP SANs %q, want %q", ips, tt.wantIPs)
			}
			if !slices.Equal(cert.DNSNames, tt.wantDNS) {
				t.Errorf("DNS SANs %q, want %q", cert.DNSNames, tt.wantDNS)
			}
			// Every host is one the certificate is good for.
			for _, h := range tt.hosts {
				if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: ca.Pool()}); err != nil {
					t.Errorf("verifying for %q: %v", h, err)
				}
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Errorf("certificate and key do not pair: %v", err)
			}
		})
	}
}

func TestIssueCertificate(t *testing.T) {
	ca := newCA(t, "hil bench sim")
	certPEM, keyPEM, err := ca.Issue("callback", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, certPEM)
	if cert.Subject.CommonName != "callback" {
		t.Errorf("CN %q, want %q", cert.Subject.CommonName, "callback")
	}
	if cert.IsCA {
		t.Error("leaf is a CA")
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage %v, want only ServerAuth", cert.ExtKeyUsage)
	}
	if n := cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
		t.Errorf("serial %v: want positive, at most 128 bits", n)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if cert.NotAfter.After(ca.cert.NotAfter) {
		t.Errorf("leaf expires %v, after its CA (%v)", cert.NotAfter, ca.cert.NotAfter)
	}

	block, rest := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" || len(rest) != 0 {
		t.Fatalf("key PEM: want one PRIVATE KEY block, got %q", keyPEM)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.(*ecdsa.PrivateKey); !ok || !k.PublicKey.Equal(cert.PublicKey) {
		t.Errorf("key %T does not match the certificate", key)
	}

	// Two certificates never share a serial or a key.
	certPEM2, _, err := ca.Issue("callback", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert2 := parseCert(t, certPEM2)
	if cert2.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Errorf("two certificates with serial %v", cert.SerialNumber)
	}
	if cert2.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Error("two certificates with the same key")
	}
}

func TestIssueErrors(t *testing.T) {
	ca := newCA(t, "hil bench sim")
	tests := []struct {
		name  string
		hosts []string
		want  []string // all in the error
	}{
		{"no hosts", nil, []string{`"pc"`, "no hosts"}},
		{"empty host", []string{"127.0.0.1", ""}, []string{`"pc"`, "empty host"}},
		{"non-ASCII DNS name", []string{"pc.bänch"}, []string{`"pc"`, `"pc.bänch"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ca.Issue("pc", tt.hosts...)
			if err == nil {
				t.Fatal("Issue succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := ca.ServerTLS("pc", tt.hosts...); err == nil {
				t.Error("ServerTLS succeeded, want an error")
			}
		})
	}
}

func TestCA(t *testing.T) {
	ca := newCA(t, "hil bench sim")
	pemBytes := ca.CertPEM()
	cert := parseCert(t, pemBytes)
	if !cert.IsCA || cert.Subject.CommonName != "hil bench sim" {
		t.Errorf("CA certificate: IsCA %v, CN %q", cert.IsCA, cert.Subject.CommonName)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA key usage %b lacks CertSign", cert.KeyUsage)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	// What an app installs as server.crt is enough to trust the CA.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CertPEM does not load into a pool")
	}
	if !pool.Equal(ca.Pool()) {
		t.Error("a pool from CertPEM differs from Pool()")
	}
	// Callers get copies.
	pemBytes[0] = 'X'
	if ca.CertPEM()[0] == 'X' {
		t.Error("CertPEM returned the CA's own slice")
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("want one CERTIFICATE block, got %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
