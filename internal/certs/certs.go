// Package certs is the bench's private PKI for the Payload Interface's TLS.
// The Payload Controller serves TLS and the payload app dials it by IP, so
// its certificate carries an IP SAN; the app's callback server has its own
// certificate, which the Payload Controller checks against the same CA.
// Only servers are authenticated: there are no client certificates.
//
// Keys are ECDSA P-256. Certificates are valid from an hour before they
// are made, to tolerate clock skew between the bench and a board, for a
// year, which is more than any bench run.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

const (
	backdate = time.Hour
	lifetime = 365 * 24 * time.Hour
)

// CA is a certificate authority that exists only for one bench run. It is
// safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA makes a CA with a fresh key. Name is its subject's common name,
// e.g. "hil bench sim".
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: CA %q: generating key: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("certs: CA %q: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// It signs leaves only.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: CA %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: CA %q: %w", name, err)
	}
	return &CA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     key,
	}, nil
}

// CertPEM returns the CA certificate in PEM: what a payload app trusts,
// installed as /opt/antaris/sdk/server.crt.
func (ca *CA) CertPEM() []byte {
	return append([]byte(nil), ca.certPEM...)
}

// Pool returns a new pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	// A new pool each time, so a caller adding to it changes no one else's.
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue makes a server certificate named name for hosts, with a fresh key.
// Each host that parses as an IP address becomes an IP SAN and any other a
// DNS SAN; there must be at least one. It returns the certificate and its
// PKCS #8 private key, both PEM.
func (ca *CA) Issue(name string, hosts ...string) (certPEM, keyPEM []byte, err error) {
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("certs: issuing %q: no hosts", name)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issuing %q: %w", name, err)
	}
	now := time.Now()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.cert.NotAfter) {
		// A leaf that outlives its issuer is no use.
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if h == "" {
			return nil, nil, fmt.Errorf("certs: issuing %q for %q: empty host", name, hosts)
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issuing %q: generating key: %w", name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		// x509 checks the SANs, e.g. that DNS names are well-formed.
		return nil, nil, fmt.Errorf("certs: issuing %q for %q: %w", name, hosts, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: issuing %q: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		nil
}

// ServerTLS returns a server configuration presenting a certificate that
// Issue made for name and hosts. It offers ALPN "h2", which gRPC clients
// require.
func (ca *CA) ServerTLS(name string, hosts ...string) (*tls.Config, error) {
	certPEM, keyPEM, err := ca.Issue(name, hosts...)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: server %q: %w", name, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
	}, nil
}

// ClientTLS returns a client configuration that trusts only ca. The server
// name comes from the address dialed, so dialing an IP checks the IP SAN.
func (ca *CA) ClientTLS() *tls.Config {
	return &tls.Config{
		RootCAs:    ca.Pool(),
		MinVersion: tls.VersionTLS12,
	}
}

// randomSerial returns a random, positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	// In [1, 2¹²⁸): RFC 5280 wants serials positive.
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit.Sub(limit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("generating serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
