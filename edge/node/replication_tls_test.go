package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/node"
)

// peerCA writes a CA and, per name, a certificate for 127.0.0.1 usable on
// both ends of a peer link (server and client auth).
func peerCA(t *testing.T, names ...string) (caFile string, certs map[string][2]string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "site-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile = write("ca.crt", "CERTIFICATE", caDER)
	certs = map[string][2]string{}
	for i, n := range names {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: n},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			KeyUsage:    x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		certs[n] = [2]string{write(n+".crt", "CERTIFICATE", der), write(n+".key", "EC PRIVATE KEY", kb)}
	}
	return caFile, certs
}

// TestReplicationMutualTLS: with replication.tls the peer links are
// mutual TLS; a node whose certificate another CA signed is refused.
func TestReplicationMutualTLS(t *testing.T) {
	caFile, certs := peerCA(t, "pi-a", "pi-b")
	_, other := peerCA(t, "pi-b")
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	cfgA.Replication.TLS = node.PeerTLSConfig{CertFile: certs["pi-a"][0], KeyFile: certs["pi-a"][1], CAFile: caFile}
	a := start(t, cfgA, node.Options{})

	// A stranger (right secret, trusts the site CA, but its certificate
	// another CA signed) gets nothing: the owner checks client certificates.
	cfgX := replicatingConfig(t, "pi-b", addrB, "pi-a", addrA)
	cfgX.Replication.TLS = node.PeerTLSConfig{CertFile: other["pi-b"][0], KeyFile: other["pi-b"][1], CAFile: caFile}
	x := start(t, cfgX, node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 20)
	waitFor(t, 10*time.Second, func() error {
		body := getText(t, "http://"+a.HTTPAddr()+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			v, ok := strings.CutPrefix(line, `outpost_replica_connects_total{peer="unknown",result="tls",role="owner"} `)
			if n, err := strconv.Atoi(v); ok && err == nil && n >= 3 {
				return nil
			}
		}
		return errorString("the owner has not refused three TLS handshakes yet")
	})
	if p, err := x.ReplicaLog("pi-a").Partition("telemetry", 0); err == nil && p.EndOffset() > 0 {
		t.Fatal("a node with a foreign certificate replicated")
	}
	if n := len(x.ReplicaLog("pi-a").Topics()); n != 0 {
		t.Fatalf("a node with a foreign certificate got the owner's topics (%d)", n)
	}
	x.stop(t)

	cfgB := replicatingConfig(t, "pi-b", addrB, "pi-a", addrA)
	cfgB.Replication.TLS = node.PeerTLSConfig{CertFile: certs["pi-b"][0], KeyFile: certs["pi-b"][1], CAFile: caFile}
	b := start(t, cfgB, node.Options{})
	publishQoS1(t, b.MQTTAddrs()[0], "dev-2", "sensors/dev-2/temp", 20)
	if n := sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 10*time.Second); n != 20 {
		t.Fatalf("pi-a over TLS: %d records, want 20", n)
	}
	if n := sameRecords(t, b.Log(), a.ReplicaLog("pi-b"), 10*time.Second); n != 20 {
		t.Fatalf("pi-b over TLS: %d records, want 20", n)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
