package schema

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/internal/polltest"
)

func seed(t *testing.T) uint64 {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("OUTPOST_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("OUTPOST_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with OUTPOST_SEED=%d)", s, s)
	return s
}

// TestConcurrentRegistries: two registries (two core instances) on one
// NATS server register the same schemas under the same subjects at once,
// from several goroutines each, in random order. IDs must be global and
// race-free (one ID per distinct schema, the same under every subject and
// from either instance), each subject must get versions 1..n with one
// version per schema, and a third registry started afterwards must load
// the same state from the bucket.
func TestConcurrentRegistries(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed(t), 0))
	srv := natstest.RunServer(t)
	_, js1 := srv.Connect()
	_, js2 := srv.Connect()
	a := startRegistry(t, js1, Config{})
	b := startRegistry(t, js2, Config{})
	expect(t, "PUT", a.url+"/config", map[string]string{"compatibility": "NONE"}, 200, "")
	polltest.Until(t, 10*time.Second, func() error {
		if b.st.level("") != LevelNone {
			return fmt.Errorf("b does not see the config yet")
		}
		return nil
	})

	const schemas, subjects, workersEach = 10, 3, 4
	type job struct{ schema, subject int }
	var jobs []job
	for s := range schemas {
		for sub := range subjects {
			jobs = append(jobs, job{s, sub})
		}
	}
	text := func(s int) string { return fmt.Sprintf(`{"type":"string","maxLength":%d}`, s+1) }

	type result struct {
		job
		id, version int
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	for w := range 2 * workersEach {
		reg := a
		if w%2 == 1 {
			reg = b
		}
		order := append([]job(nil), jobs...)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, j := range order {
				// Through the method, not HTTP, to see the version each
				// caller was given.
				id, ver, err := reg.register(context.Background(), fmt.Sprintf("sub-%d", j.subject), schemaRequest{Schema: text(j.schema), SchemaType: "JSON"}, false)
				if err != nil {
					t.Errorf("register %v: %v", j, err)
					return
				}
				mu.Lock()
				results = append(results, result{j, id, ver})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d registrations, %.0f + %.0f compare-and-set conflicts retried", len(results),
		counterValue(a.m.casConflicts), counterValue(b.m.casConflicts))

	idOf := map[int]int{} // schema -> ID
	schemaOf := map[int]int{}
	versionOf := map[job]int{}
	for _, r := range results {
		if v, ok := versionOf[r.job]; ok && v != r.version {
			t.Errorf("schema %d under sub-%d was given versions %d and %d", r.schema, r.subject, v, r.version)
		}
		versionOf[r.job] = r.version
		if id, ok := idOf[r.schema]; ok && id != r.id {
			t.Errorf("schema %d got IDs %d and %d", r.schema, id, r.id)
		}
		if s, ok := schemaOf[r.id]; ok && s != r.schema {
			t.Errorf("ID %d given to schemas %d and %d", r.id, s, r.schema)
		}
		idOf[r.schema], schemaOf[r.id] = r.id, r.schema
	}
	if len(idOf) != schemas {
		t.Fatalf("%d schemas got IDs, want %d", len(idOf), schemas)
	}

	// Each subject: versions 1..schemas, each schema once, from either
	// instance once both have caught up.
	for _, reg := range []*testRegistry{a, b} {
		for sub := range subjects {
			polltest.Until(t, 10*time.Second, func() error {
				code, body := call(t, "GET", fmt.Sprintf("%s/schemas?subjectPrefix=sub-%d", reg.url, sub), nil)
				if code != 200 {
					return fmt.Errorf("%d %s", code, body)
				}
				var got []schemaResponse
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					return err
				}
				if len(got) != schemas {
					return fmt.Errorf("sub-%d has %d versions, want %d", sub, len(got), schemas)
				}
				seen := map[int]bool{}
				for i, v := range got {
					if v.Version != i+1 {
						return fmt.Errorf("sub-%d: versions %v are not 1..%d", sub, got, schemas)
					}
					if seen[v.ID] {
						return fmt.Errorf("sub-%d: ID %d in two versions", sub, v.ID)
					}
					seen[v.ID] = true
					s, ok := schemaOf[v.ID]
					if !ok || text(s) != v.Schema {
						return fmt.Errorf("sub-%d version %d: ID %d holds %s", sub, v.Version, v.ID, v.Schema)
					}
					if given := versionOf[job{s, sub}]; given != v.Version {
						return fmt.Errorf("sub-%d: schema %d was registered as version %d but is version %d", sub, s, given, v.Version)
					}
				}
				return nil
			})
		}
	}

	// A registry started now rebuilds the same state from the bucket.
	_, js3 := srv.Connect()
	c := startRegistry(t, js3, Config{})
	_, want := call(t, "GET", a.url+"/schemas", nil)
	_, got := call(t, "GET", c.url+"/schemas", nil)
	if got != want {
		t.Fatalf("a fresh registry loaded\n%s\nwant\n%s", got, want)
	}
	expect(t, "GET", c.url+"/config", nil, 200, `{"compatibilityLevel":"NONE"}`)
}

// TestRegistrySurvivesNATSRestart: the state is JetStream's; after the
// server restarts on its store, the registry (and a new one) still serve
// it, and registration continues with the next ID.
func TestRegistrySurvivesNATSRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{})
	expect(t, "POST", r.url+"/subjects/s/versions", sch(`{"type":"string"}`), 200, `{"id":1}`)
	srv.Restart()
	polltest.Until(t, 20*time.Second, func() error {
		code, body := call(t, "POST", r.url+"/subjects/s/versions", sch(`{"type":["string","null"]}`))
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		if body != `{"id":2}` {
			return fmt.Errorf("got %s, want id 2", body)
		}
		return nil
	})
	_, js2 := srv.Connect()
	r2 := startRegistry(t, js2, Config{})
	expect(t, "GET", r2.url+"/subjects/s/versions", nil, 200, `[1,2]`)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
