package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// Bearer checks a static bearer token. The zero value and a Bearer made
// with an empty token let every request through.
type Bearer struct {
	hash  [sha256.Size]byte
	set   bool
	realm string
	hint  string   // where the token comes from, for the refusal message
	open  []string // exact paths that need no token
}

// New returns a check for token. realm names the service in
// WWW-Authenticate; hint says where an operator finds the token (for
// example "the node's http.token"); open lists exact paths that need no
// token (a trailing-slash variant is not open: the check fails closed).
func New(token, realm, hint string, open ...string) *Bearer {
	b := &Bearer{realm: realm, hint: hint, open: open}
	if token != "" {
		b.hash, b.set = sha256.Sum256([]byte(token)), true
	}
	return b
}

// Enabled reports whether a token is required at all.
func (b *Bearer) Enabled() bool { return b != nil && b.set }

// Allow reports whether r may pass.
func (b *Bearer) Allow(r *http.Request) bool {
	if !b.Enabled() || slices.Contains(b.open, r.URL.Path) {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], b.hash[:]) == 1
}

// Refuse answers r with 401 and what to send instead.
func (b *Bearer) Refuse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="`+b.realm+`"`)
	msg := "this API needs a token: send the header \"Authorization: Bearer <token>\" with " + b.hint
	if r.Header.Get("Authorization") != "" {
		msg = "wrong or malformed token: send \"Authorization: Bearer <token>\" with " + b.hint
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// Wrap returns h behind the check; refused, if not nil, is called for every
// refused request (to count it).
func (b *Bearer) Wrap(h http.Handler, refused func(*http.Request)) http.Handler {
	if !b.Enabled() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.Allow(r) {
			b.Refuse(w, r)
			if refused != nil {
				refused(r)
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}
