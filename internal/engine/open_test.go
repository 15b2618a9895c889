package engine

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
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/hookd/hookd/internal/testkit"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, as
// `docker --tlsverify` would use them, written to files.
type testPKI struct {
	dir               string
	ca                *x509.Certificate
	caKey             *ecdsa.PrivateKey
	caFile            string
	serverCert        tls.Certificate
	certFile, keyFile string // the client's
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	srvDER, srvKey := p.issue(t, 2, x509.ExtKeyUsageServerAuth)
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := p.issue(t, 3, x509.ExtKeyUsageClientAuth)
	p.certFile = p.write(t, "cert.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFile = p.write(t, "key.pem", "EC PRIVATE KEY", keyDER)
	return p
}

func (p *testPKI) issue(t *testing.T, serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "hookd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func (p *testPKI) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpenTCPWithTLS reaches the real engine as a tcp:// host with mutual TLS: a TLS endpoint
// that demands a client certificate of the CA stands in front of the engine's socket, as
// `dockerd --tlsverify` would.
func TestOpenTCPWithTLS(t *testing.T) {
	testkit.RequireDocker(t)
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	if !strings.HasPrefix(host, "unix://") {
		t.Skipf("the engine is at %s, not a unix socket", host)
	}
	sock := strings.TrimPrefix(host, "unix://")
	pki := newTestPKI(t)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: "docker"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
	srv := httptest.NewUnstartedServer(proxy)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tcp := "tcp://" + srv.Listener.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eng, err := Open(tcp, &TLS{CA: pki.caFile, Cert: pki.certFile, Key: pki.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := eng.Ping(ctx); err != nil {
		t.Fatalf("ping %s with the client certificate: %v", tcp, err)
	}
	if _, err := eng.List(ctx, "hookd.test.open-tls", "none"); err != nil {
		t.Fatalf("list through %s: %v", tcp, err)
	}

	// Without TLS, or trusting another CA, the same engine is not reached.
	plain, err := Open(tcp, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Ping(ctx); err == nil {
		t.Error("ping without TLS reached a --tlsverify engine")
	}
	other := newTestPKI(t)
	wrong, err := Open(tcp, &TLS{CA: pki.caFile, Cert: other.certFile, Key: other.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := wrong.Ping(ctx); err == nil {
		t.Error("ping with a client certificate of another CA succeeded")
	}
}

func TestOpenRefusesABadHost(t *testing.T) {
	for _, host := range []string{"ssh://", "tcp://[::1"} {
		if eng, err := Open(host, nil); err == nil {
			eng.Close()
			t.Errorf("Open(%q) succeeded", host)
		}
	}
}
