package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// User is one account.
type User struct {
	// Username is the MQTT username, and the certificate common name that
	// identifies the user over TLS with client certificates.
	Username string `yaml:"username"`
	// PasswordHash is a bcrypt hash ("$2a$…", e.g. from
	// `htpasswd -nbB user pass`); empty allows certificate login only.
	PasswordHash string `yaml:"password_hash"`
	// Publish lists topic filters the user may publish to; omitted = all.
	Publish []string `yaml:"publish"`
	// Subscribe lists topic filters the user may subscribe to and receive
	// from; omitted = all.
	Subscribe []string `yaml:"subscribe"`
}

// Config configures the Hook.
type Config struct {
	// Users are the accounts.
	Users []User
	// AllowAnonymous says whether clients without credentials are accepted
	// on a listener (by listener id); nil accepts none.
	AllowAnonymous func(listener string) bool
	// Admit, if set, is asked after a client authenticated whether it may
	// have a session (the session cap); false refuses the connection.
	Admit func(*mochi.Client) bool
	// Logger receives refusals; nil discards.
	Logger *slog.Logger
	// Registerer receives the hook's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Validate checks users; errors name the field.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, u := range c.Users {
		f := fmt.Sprintf("auth: users[%d]", i)
		if u.Username == "" {
			return fmt.Errorf("%s.username: empty", f)
		}
		if seen[u.Username] {
			return fmt.Errorf("%s.username: %q appears twice", f, u.Username)
		}
		seen[u.Username] = true
		if u.PasswordHash != "" {
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				return fmt.Errorf("%s.password_hash: not a bcrypt hash (%v); create one with `htpasswd -nbB user password`", f, err)
			}
		}
		for j, flt := range u.Publish {
			if !validFilter(flt) {
				return fmt.Errorf("%s.publish[%d]: %q is not a valid MQTT topic filter", f, j, flt)
			}
		}
		for j, flt := range u.Subscribe {
			if !validFilter(flt) {
				return fmt.Errorf("%s.subscribe[%d]: %q is not a valid MQTT topic filter", f, j, flt)
			}
		}
	}
	return nil
}

// Hook is the authentication and ACL hook.
type Hook struct {
	mochi.HookBase
	cfg   Config
	users map[string]*User

	fails  *prometheus.CounterVec
	denied *prometheus.CounterVec

	mu       sync.RWMutex         // read-locked on every publish (OnACLCheck)
	clients  map[string]principal // mu; by client id
	verified map[string][32]byte  // mu; username -> sha256 of last good password
}

type principal struct {
	cl   *mochi.Client
	user *User // nil: anonymous, all topics
}

var _ mochi.Hook = (*Hook)(nil)

// New returns an auth hook.
func New(cfg Config) (*Hook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hook{
		cfg:      cfg,
		users:    make(map[string]*User),
		clients:  make(map[string]principal),
		verified: make(map[string][32]byte),
		fails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_mqtt_auth_failures_total",
			Help: "Refused CONNECTs, by reason: anonymous, unknown_user, bad_password, reserved_id, session_cap.",
		}, []string{"reason"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_mqtt_acl_denied_total",
			Help: "ACL denials, by direction: publish or subscribe (including delivery to a subscriber).",
		}, []string{"direction"}),
	}
	for i := range cfg.Users {
		u := cfg.Users[i]
		h.users[u.Username] = &u
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(h.fails, h.denied)
	}
	return h, nil
}

// ID names the hook for mochi.
func (h *Hook) ID() string { return "outpost-auth" }

// Provides tells mochi which events the hook handles.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnDisconnect, mochi.OnClientExpired:
		return true
	}
	return false
}

// tlsState is satisfied by *tls.Conn and by connection wrappers that keep
// it reachable.
type tlsState interface {
	ConnectionState() tls.ConnectionState
}

// OnConnectAuthenticate identifies the client; see the package doc.
func (h *Hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	if cl.ID == mochi.InlineClientId {
		h.refuse(cl, "reserved_id")
		return false
	}
	if ts, ok := cl.Net.Conn.(tlsState); ok {
		if st := ts.ConnectionState(); len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
			cn := st.PeerCertificates[0].Subject.CommonName
			if u, ok := h.users[cn]; ok {
				return h.admit(cl, u)
			}
			h.refuse(cl, "unknown_user")
			return false
		}
	}
	name := string(pk.Connect.Username)
	if name == "" && !pk.Connect.PasswordFlag {
		if h.cfg.AllowAnonymous != nil && h.cfg.AllowAnonymous(cl.Net.Listener) {
			return h.admit(cl, nil)
		}
		h.refuse(cl, "anonymous")
		return false
	}
	u, ok := h.users[name]
	if !ok {
		h.refuse(cl, "unknown_user")
		return false
	}
	if u.PasswordHash == "" || !h.checkPassword(u, pk.Connect.Password) {
		h.refuse(cl, "bad_password")
		return false
	}
	return h.admit(cl, u)
}

func (h *Hook) checkPassword(u *User, password []byte) bool {
	sum := sha256.Sum256(password)
	h.mu.Lock()
	cached, ok := h.verified[u.Username]
	h.mu.Unlock()
	if ok && subtle.ConstantTimeCompare(cached[:], sum[:]) == 1 {
		return true
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), password) != nil {
		return false
	}
	h.mu.Lock()
	h.verified[u.Username] = sum
	h.mu.Unlock()
	return true
}

func (h *Hook) refuse(cl *mochi.Client, reason string) {
	h.fails.WithLabelValues(reason).Inc()
	h.cfg.Logger.Warn("auth: connection refused", "client", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener, "reason", reason)
}

func (h *Hook) admit(cl *mochi.Client, u *User) bool {
	if h.cfg.Admit != nil && !h.cfg.Admit(cl) {
		h.refuse(cl, "session_cap")
		return false
	}
	h.bind(cl, u)
	return true
}

func (h *Hook) bind(cl *mochi.Client, u *User) {
	h.mu.Lock()
	h.clients[cl.ID] = principal{cl: cl, user: u}
	h.mu.Unlock()
}

// OnACLCheck allows or denies a publish (write) or a subscription and
// delivery (read) on topic.
func (h *Hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	h.mu.RLock()
	p, ok := h.clients[cl.ID]
	h.mu.RUnlock()
	if !ok {
		return false
	}
	if p.user == nil {
		return true
	}
	list, dir := p.user.Subscribe, "subscribe"
	if write {
		list, dir = p.user.Publish, "publish"
	}
	if list == nil {
		return true
	}
	for _, f := range list {
		if allows(f, topic, write) {
			return true
		}
	}
	h.denied.WithLabelValues(dir).Inc()
	return false
}

// allows reports whether the ACL filter f admits topic. For a publish the
// topic is a name; for a subscription it is itself a filter, allowed only
// if every topic it can match is admitted by f.
func allows(f, topic string, write bool) bool {
	fl := strings.Split(f, "/")
	tl := strings.Split(topic, "/")
	if !write && strings.HasPrefix(topic, "$share/") && len(tl) > 2 {
		tl = tl[2:] // $share/<group>/<filter>
	}
	if len(tl) > 0 && strings.HasPrefix(tl[0], "$") && len(fl) > 0 && (fl[0] == "#" || fl[0] == "+") {
		return false
	}
	for i, fv := range fl {
		if fv == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		switch {
		case fv == "+":
			if tl[i] == "#" {
				return false // "+" does not cover every deeper level
			}
		case tl[i] != fv:
			return false
		}
	}
	return len(fl) == len(tl)
}

// OnDisconnect forgets a client whose session ends.
func (h *Hook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if expire {
		h.forget(cl)
	}
}

// OnClientExpired forgets an expired session.
func (h *Hook) OnClientExpired(cl *mochi.Client) { h.forget(cl) }

func (h *Hook) forget(cl *mochi.Client) {
	h.mu.Lock()
	if p, ok := h.clients[cl.ID]; ok && p.cl == cl {
		delete(h.clients, cl.ID)
	}
	h.mu.Unlock()
}

func validFilter(f string) bool {
	if f == "" {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}
