package schema_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	coreschema "github.com/outpost-edge/outpost/core/schema"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/sync/schema"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// registry runs core's real registry over js and returns its HTTP URL.
func registry(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	r, err := coreschema.New(js, coreschema.Config{Prefix: wire.DefaultPrefix}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
	})
	polltest.Until(t, 20*time.Second, func() error {
		if !r.Ready() {
			return errors.New("registry not ready")
		}
		return nil
	})
	return srv.URL
}

func register(t *testing.T, url, subject, schemaJSON string) {
	t.Helper()
	body := fmt.Sprintf(`{"schemaType":"JSON","schema":%q}`, schemaJSON)
	resp, err := http.Post(url+"/subjects/"+subject+"/versions", "application/vnd.schemaregistry.v1+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("register %s: %d %s", subject, resp.StatusCode, b)
	}
}

// copyRecorder keeps what OnUpdate handed over last.
type copyRecorder struct {
	mu       sync.Mutex
	subjects []wire.SubjectRecord
	schemas  []wire.SchemaRecord
	calls    int
}

func (r *copyRecorder) update(s []wire.SubjectRecord, sc []wire.SchemaRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subjects, r.schemas = s, sc
	r.calls++
}

// versions returns subject -> latest version, and the schema IDs known.
func (r *copyRecorder) state() (map[string]int, map[int]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vs := map[string]int{}
	for _, s := range r.subjects {
		if v, ok := s.Latest(); ok {
			vs[s.Subject] = v.Version
		}
	}
	ids := map[int]bool{}
	for _, s := range r.schemas {
		ids[s.ID] = true
	}
	return vs, ids
}

func (r *copyRecorder) waitVersion(t *testing.T, subject string, version int) {
	t.Helper()
	polltest.Until(t, 10*time.Second, func() error {
		vs, _ := r.state()
		if vs[subject] != version {
			return fmt.Errorf("subject %s at version %d, want %d (copy %v)", subject, vs[subject], version, vs)
		}
		return nil
	})
}

type runningSyncer struct {
	rec  *copyRecorder
	stop func()
}

func startSyncer(t *testing.T, st *meta.Store, natsURL string, subjects ...string) *runningSyncer {
	t.Helper()
	rec := &copyRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := schema.Open(ctx, schema.Config{Subjects: subjects, OnUpdate: rec.update, RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond}, st)
	if err != nil {
		t.Fatal(err)
	}
	link, err := upstream.NewLink(upstream.LinkConfig{URL: natsURL, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = link.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := s.Run(ctx, link); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return &runningSyncer{rec: rec, stop: stop}
}

const v1 = `{"type":"object","properties":{"temp":{"type":"number"}},"required":["temp"]}`
const v2 = `{"type":"object","properties":{"temp":{"type":"number"}}}` // BACKWARD compatible: the reader asks less

// The node's copy follows the registry by watch, is kept in the metadata
// store, serves a restarted node with the centre down, and catches up
// with what changed while it was offline.
func TestSyncFollowsRegistryAndWorksOffline(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	url := registry(t, js)
	register(t, url, "readings-value", v1)
	register(t, url, "other-value", v1)

	path := filepath.Join(t.TempDir(), "meta.db")
	st, err := meta.Open(path, meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	s := startSyncer(t, st, srv.URL(), "readings-value", "not-yet")
	s.rec.waitVersion(t, "readings-value", 1)
	// A new version reaches the node within seconds (watch, not poll).
	start := time.Now()
	register(t, url, "readings-value", v2)
	s.rec.waitVersion(t, "readings-value", 2)
	t.Logf("new version reached the node in %v", time.Since(start))
	// A subject the routes name that appears later is picked up too.
	register(t, url, "not-yet", v1)
	s.rec.waitVersion(t, "not-yet", 1)
	vs, ids := s.rec.state()
	if _, ok := vs["other-value"]; ok {
		t.Fatalf("the copy holds a subject no route names: %v", vs)
	}
	if len(ids) != 2 {
		t.Fatalf("schema IDs in the copy: %v, want the 2 distinct schemas", ids)
	}
	s.stop()

	// Centre down, node restarted: the stored copy serves at Open.
	srv.Stop()
	off := &copyRecorder{}
	if _, err := schema.Open(context.Background(), schema.Config{Subjects: []string{"readings-value", "not-yet"}, OnUpdate: off.update}, st); err != nil {
		t.Fatal(err)
	}
	if vs, ids := off.state(); vs["readings-value"] != 2 || vs["not-yet"] != 1 || len(ids) != 2 {
		t.Fatalf("offline copy after restart: %v %v", vs, ids)
	}

	// Centre back: a restarted syncer catches up with a deletion made
	// behind its back (another connection deletes the subject).
	srv.Start()
	_, js2 := srv.Connect()
	url2 := registry(t, js2)
	for _, u := range []string{"/subjects/not-yet", "/subjects/not-yet?permanent=true"} {
		req, _ := http.NewRequest("DELETE", url2+u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("DELETE %s: %d %s", u, resp.StatusCode, bytes.TrimSpace(b))
		}
	}
	s2 := startSyncer(t, st, srv.URL(), "readings-value", "not-yet")
	polltest.Until(t, 10*time.Second, func() error {
		vs, _ := s2.rec.state()
		if _, ok := vs["not-yet"]; ok || vs["readings-value"] != 2 {
			return fmt.Errorf("copy %v: want readings-value at 2 and not-yet gone", vs)
		}
		return nil
	})
	stored, err := st.All(context.Background(), schema.MetaBucket)
	if err != nil {
		t.Fatal(err)
	}
	// The registry keeps a permanently deleted subject's record, without
	// versions, so versions are never reused; the copy follows it.
	if raw, ok := stored[wire.SchemaSubjectKey("not-yet")]; ok {
		if rec, err := wire.DecodeSubjectRecord(raw); err != nil || len(rec.Versions) != 0 {
			t.Fatalf("stored not-yet: %+v %v, want no versions", rec, err)
		}
	}
	if stored[wire.SchemaSubjectKey("readings-value")] == nil {
		t.Fatalf("stored copy keys: %v", keys(stored))
	}
}

// The copy survives the link dropping and coming back: a version
// registered while the node was cut off arrives after it reconnects.
func TestSyncAcrossOutage(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	url := registry(t, js)
	register(t, url, "readings-value", v1)
	st, err := meta.Open(filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := startSyncer(t, st, srv.URL(), "readings-value")
	s.rec.waitVersion(t, "readings-value", 1)

	srv.Stop()
	srv.Start()
	_, js2 := srv.Connect()
	url2 := registry(t, js2)
	register(t, url2, "readings-value", v2)
	s.rec.waitVersion(t, "readings-value", 2)
}

// References pull the referenced subject and schema into the copy.
func TestSyncReferences(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	url := registry(t, js)
	register(t, url, "address", `{"type":"object","properties":{"city":{"type":"string"}}}`)
	body := `{"schemaType":"JSON","schema":"{\"type\":\"object\",\"properties\":{\"to\":{\"$ref\":\"address.json\"}}}","references":[{"name":"address.json","subject":"address","version":1}]}`
	resp, err := http.Post(url+"/subjects/order/versions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("register order: %d %s", resp.StatusCode, b)
	}
	st, err := meta.Open(filepath.Join(t.TempDir(), "meta.db"), meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := startSyncer(t, st, srv.URL(), "order")
	s.rec.waitVersion(t, "order", 1)
	s.rec.waitVersion(t, "address", 1)
	if _, ids := s.rec.state(); len(ids) != 2 {
		t.Fatalf("ids %v, want the order schema and the address schema", ids)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
