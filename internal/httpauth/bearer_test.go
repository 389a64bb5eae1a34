package httpauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	const token = "s3cret-token"
	refused := 0
	h := New(token, "test", "the configured token", "/healthz").Wrap(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }),
		func(*http.Request) { refused++ })
	do := func(path, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for _, good := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token + " "} {
		if w := do("/v1/x", good); w.Code != http.StatusNoContent {
			t.Errorf("%q: %d", good, w.Code)
		}
	}
	if w := do("/healthz", ""); w.Code != http.StatusNoContent {
		t.Errorf("open path: %d", w.Code)
	}
	n := 0
	for _, path := range []string{"/v1/x", "/healthz/", "/"} {
		for _, bad := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token, "Bearer"} {
			w := do(path, bad)
			n++
			var body struct{ Error string }
			if w.Code != http.StatusUnauthorized || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer realm="test"`) ||
				json.Unmarshal(w.Body.Bytes(), &body) != nil || !strings.Contains(body.Error, "Authorization: Bearer") {
				t.Errorf("%s with %q: %d %v %s", path, bad, w.Code, w.Header(), w.Body)
			}
			if (bad == "") == strings.Contains(body.Error, "wrong") {
				t.Errorf("%s with %q: message %q does not say whether the token was missing or wrong", path, bad, body.Error)
			}
		}
	}
	if refused != n {
		t.Errorf("refused callback called %d times for %d refusals", refused, n)
	}
}

func TestBearerDisabled(t *testing.T) {
	for _, b := range []*Bearer{nil, New("", "r", "h")} {
		if b.Enabled() || !b.Allow(httptest.NewRequest(http.MethodGet, "/v1/x", nil)) {
			t.Errorf("%v: a check without a token must let everything through", b)
		}
	}
}
