package netaddr

import (
	"net"
	"net/url"
	"strings"
)

// Loopback reports whether addr (host:port) binds only to loopback:
// "localhost" or a loopback IP. An empty host (":1883", every interface)
// and anything unparsable are not loopback, so a caller deciding whether
// authentication can be skipped fails closed.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return LoopbackHost(host)
}

// LoopbackHost is Loopback for a bare host.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RedactURL hides the user information (user:password, or a token in the
// user position as in nats://token@host) of every URL in a comma-separated
// list, replacing it with "redacted" so the log still shows that
// credentials were given. Entries that do not parse are kept as they are,
// trimmed: they carry no recognisable credentials.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		parts[i] = p
		u, err := url.Parse(p)
		if err != nil || u.User == nil {
			continue
		}
		u.User = url.User("redacted")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
