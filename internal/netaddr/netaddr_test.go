package netaddr

import (
	"strings"
	"testing"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883":   true,
		"127.9.9.9:80":     true,
		"[::1]:8080":       true,
		"localhost:8080":   true,
		":1883":            false, // every interface
		"0.0.0.0:1883":     false,
		"[::]:1883":        false,
		"192.168.1.5:1883": false,
		"example.com:80":   false,
		"127.0.0.1":        false, // no port: not an address we can judge
		"":                 false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://u:secret@h:1,tls://tok@h2:2": "nats://redacted@h:1,tls://redacted@h2:2",
		"nats://h:4222":                      "nats://h:4222",
		"nats://a:b@h:1, nats://h2:2":        "nats://redacted@h:1,nats://h2:2",
		"":                                   "",
	} {
		got := RedactURL(in)
		if got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "secret") || strings.Contains(got, "tok@") {
			t.Errorf("RedactURL(%q) left a secret: %q", in, got)
		}
	}
}
