package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/api"
	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/prometheus/client_golang/prometheus"
)

var bg = context.Background()

type env struct {
	url string
	log *elog.Log
	reg *prometheus.Registry
}

// newEnv serves the API over a real log in a temp dir with small segments
// (so pages cross segment boundaries) and a topic "t" of 2 partitions.
func newEnv(t testing.TB, mod func(*api.Config), logMod func(*elog.Config)) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	lc := elog.Config{SegmentMaxBytes: 4096, Registerer: reg}
	if logMod != nil {
		logMod(&lc)
	}
	l, err := elog.Open(t.TempDir(), lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Log: l, Gatherer: reg, Registerer: reg}
	if mod != nil {
		mod(&cfg)
	}
	h, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, log: l, reg: reg}
}

type resp struct {
	code   int
	body   []byte
	header http.Header
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v): %s", err, r.body)
	}
	return m
}

func get(t *testing.T, url string, hdr ...string) resp {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) resp {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{code: res.StatusCode, body: b, header: res.Header}
}

func appendN(t *testing.T, l *elog.Log, part int32, n int, mk func(i int) elog.Record) {
	t.Helper()
	p, err := l.Partition("t", part)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := p.Append(bg, []elog.Record{mk(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func textRec(i int) elog.Record {
	return elog.Record{
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, i, time.UTC).UnixNano(),
		Key:       []byte(fmt.Sprintf("dev-%d", i%3)),
		Value:     []byte(fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, i, strings.Repeat("x", 80))),
		Headers:   []elog.Header{{Key: "mqtt.topic", Value: []byte("sensors/dev/temp")}},
	}
}

// keys returns a JSON object's field names, sorted.
func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	polltest.Until(t, timeout, cond)
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestTopicsShape(t *testing.T) {
	e := newEnv(t, nil, nil)
	appendN(t, e.log, 1, 42, textRec)
	r := get(t, e.url+"/v1/topics")
	if r.code != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/topics: %d %s", r.code, r.body)
	}
	m := r.json(t)
	if !slices.Equal(keys(m), []string{"topics"}) {
		t.Fatalf("top-level fields %v, want [topics]", keys(m))
	}
	topics := m["topics"].([]any)
	if len(topics) != 1 {
		t.Fatalf("topics: %v", topics)
	}
	tp := topics[0].(map[string]any)
	if tp["name"] != "t" {
		t.Fatalf("topic name %v", tp["name"])
	}
	for _, f := range []string{"name", "partitions", "retention_bytes", "retention_age_seconds"} {
		if _, ok := tp[f]; !ok {
			t.Errorf("topic lacks %q: %v", f, keys(tp))
		}
	}
	parts := tp["partitions"].([]any)
	if len(parts) != 2 {
		t.Fatalf("partitions: %v", parts)
	}
	p1 := parts[1].(map[string]any)
	for _, f := range []string{"partition", "start_offset", "end_offset", "bytes", "segments"} {
		if _, ok := p1[f].(float64); !ok {
			t.Errorf("partition field %q is %T (%v), want a number; fields %v", f, p1[f], p1[f], keys(p1))
		}
	}
	info, _ := e.log.Partition("t", 1)
	if p1["partition"] != 1.0 || p1["start_offset"] != 0.0 || p1["end_offset"] != 42.0 || p1["bytes"] != float64(info.Bytes()) {
		t.Fatalf("partition 1 = %v; log says end %d bytes %d", p1, info.EndOffset(), info.Bytes())
	}
	// A single topic and a single partition.
	if r := get(t, e.url+"/v1/topics/t"); r.code != 200 || r.json(t)["name"] != "t" {
		t.Fatalf("GET /v1/topics/t: %d %s", r.code, r.body)
	}
	if r := get(t, e.url+"/v1/topics/t/partitions/1"); r.code != 200 || r.json(t)["end_offset"] != 42.0 {
		t.Fatalf("GET /v1/topics/t/partitions/1: %d %s", r.code, r.body)
	}
	if r := get(t, e.url+"/v1/topics/t/partitions/2"); r.code != 404 {
		t.Fatalf("GET partition 2: %d %s", r.code, r.body)
	}
	if r := get(t, e.url+"/v1/topics/nope"); r.code != 404 || !strings.Contains(r.json(t)["error"].(string), "nope") {
		t.Fatalf("GET unknown topic: %d %s", r.code, r.body)
	}
}

func TestTopicsWithCursors(t *testing.T) {
	st, err := meta.Open(t.TempDir()+"/meta.db", meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := newEnv(t, func(c *api.Config) { c.Meta = st }, nil)
	appendN(t, e.log, 0, 10, textRec)
	if err := st.SetCursor(bg, "upstream", "t", 0, 7); err != nil {
		t.Fatal(err)
	}
	p0 := get(t, e.url+"/v1/topics").json(t)["topics"].([]any)[0].(map[string]any)["partitions"].([]any)[0].(map[string]any)
	c, ok := p0["cursors"].(map[string]any)["upstream"].(map[string]any)
	if !ok || c["offset"] != 7.0 || c["lag"] != 3.0 {
		t.Fatalf("partition 0 cursors: %v", p0["cursors"])
	}
}

func TestRecordsShape(t *testing.T) {
	e := newEnv(t, nil, nil)
	ts := time.Date(2026, 11, 23, 1, 2, 3, 4, time.UTC)
	binary := []byte{0xff, 0x00, 0xfe}
	p, _ := e.log.Partition("t", 0)
	if _, err := p.Append(bg, []elog.Record{
		{Timestamp: ts.UnixNano(), Key: []byte("dev-1"), Value: []byte("21.5 °C"),
			Headers: []elog.Header{{Key: "mqtt.topic", Value: []byte("s/dev-1/temp")}, {Key: "raw", Value: binary}, {Key: "mqtt.topic", Value: []byte("dup")}}},
		{Timestamp: ts.UnixNano() + 1, Key: binary, Value: binary},
		{Timestamp: 0},
	}); err != nil {
		t.Fatal(err)
	}
	r := get(t, e.url+"/v1/topics/t/partitions/0/records?offset=0&limit=10")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	m := r.json(t)
	for _, f := range []string{"records", "next_offset"} {
		if _, ok := m[f]; !ok {
			t.Fatalf("answer lacks %q: %s", f, r.body)
		}
	}
	if m["next_offset"] != 3.0 {
		t.Fatalf("next_offset %v", m["next_offset"])
	}
	recs := m["records"].([]any)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	r0 := recs[0].(map[string]any)
	if got, want := keys(r0), []string{"headers", "headers_text", "key", "key_text", "offset", "timestamp", "value", "value_text"}; !slices.Equal(got, want) {
		t.Fatalf("record 0 fields %v, want %v", got, want)
	}
	if r0["offset"] != 0.0 || r0["timestamp"] != "2026-11-23T01:02:03.000000004Z" {
		t.Fatalf("record 0 offset/timestamp: %v %v", r0["offset"], r0["timestamp"])
	}
	if tt, err := time.Parse(time.RFC3339Nano, r0["timestamp"].(string)); err != nil || !tt.Equal(ts) {
		t.Fatalf("timestamp does not parse as RFC 3339 to %v: %v %v", ts, tt, err)
	}
	if r0["key"] != b64("dev-1") || r0["key_text"] != "dev-1" || r0["value"] != b64("21.5 °C") || r0["value_text"] != "21.5 °C" {
		t.Fatalf("record 0 key/value: %v", r0)
	}
	hdrs := r0["headers"].(map[string]any)
	htext := r0["headers_text"].(map[string]any)
	if len(hdrs) != 2 || hdrs["mqtt.topic"] != b64("s/dev-1/temp") || hdrs["raw"] != base64.StdEncoding.EncodeToString(binary) {
		t.Fatalf("headers %v", hdrs)
	}
	if len(htext) != 1 || htext["mqtt.topic"] != "s/dev-1/temp" {
		t.Fatalf("headers_text %v (binary headers must be missing, the first duplicate wins)", htext)
	}
	r1 := recs[1].(map[string]any)
	if got, want := keys(r1), []string{"headers", "key", "offset", "timestamp", "value"}; !slices.Equal(got, want) {
		t.Fatalf("binary record fields %v, want %v (no *_text for binary)", got, want)
	}
	if r1["value"] != base64.StdEncoding.EncodeToString(binary) {
		t.Fatalf("binary value %v", r1["value"])
	}
	r2 := recs[2].(map[string]any)
	if r2["key"] != "" || r2["value"] != "" || r2["timestamp"] != "1970-01-01T00:00:00.000000000Z" || len(r2["headers"].(map[string]any)) != 0 {
		t.Fatalf("empty record %v", r2)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestPagination reads a partition spanning many segments page by page
// through next_offset and checks every record arrives once, in order.
func TestPagination(t *testing.T) {
	e := newEnv(t, nil, nil)
	const n = 300
	appendN(t, e.log, 0, n, textRec)
	p, _ := e.log.Partition("t", 0)
	if segs := p.Info().Segments; segs < 5 {
		t.Fatalf("only %d segments; the test needs several", segs)
	}
	for _, limit := range []int{1, 7, 64, 1000} {
		next, pages := 0, 0
		for next < n {
			r := get(t, fmt.Sprintf("%s/v1/topics/t/partitions/0/records?offset=%d&limit=%d", e.url, next, limit))
			if r.code != 200 {
				t.Fatalf("limit %d offset %d: %d %s", limit, next, r.code, r.body)
			}
			var page struct {
				Records []struct {
					Offset    int64  `json:"offset"`
					ValueText string `json:"value_text"`
				} `json:"records"`
				NextOffset int `json:"next_offset"`
			}
			json.Unmarshal(r.body, &page)
			if len(page.Records) == 0 || len(page.Records) > limit {
				t.Fatalf("limit %d offset %d: %d records", limit, next, len(page.Records))
			}
			for _, rec := range page.Records {
				if rec.Offset != int64(next) || rec.ValueText != string(textRec(next).Value) {
					t.Fatalf("limit %d: got offset %d %q, want %d", limit, rec.Offset, rec.ValueText, next)
				}
				next++
			}
			if page.NextOffset != next {
				t.Fatalf("next_offset %d, want %d", page.NextOffset, next)
			}
			pages++
		}
		t.Logf("limit %d: %d pages", limit, pages)
		if limit < n && pages != (n+limit-1)/limit {
			t.Fatalf("limit %d: %d pages, want %d (pages must be full across segment boundaries)", limit, pages, (n+limit-1)/limit)
		}
	}
	// At the end: nothing, and next_offset stays.
	r := get(t, fmt.Sprintf("%s/v1/topics/t/partitions/0/records?offset=%d", e.url, n))
	if m := r.json(t); r.code != 200 || len(m["records"].([]any)) != 0 || m["next_offset"] != float64(n) {
		t.Fatalf("at end: %d %s", r.code, r.body)
	}
	// No offset means the start.
	if m := get(t, e.url+"/v1/topics/t/partitions/0/records?limit=2").json(t); m["records"].([]any)[0].(map[string]any)["offset"] != 0.0 {
		t.Fatalf("default offset: %v", m)
	}
}

func TestMaxBytes(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxBytes = 2048 }, nil)
	appendN(t, e.log, 0, 50, textRec)
	count := func(q string) int {
		r := get(t, e.url+"/v1/topics/t/partitions/0/records?"+q)
		if r.code != 200 {
			t.Fatalf("%s: %d %s", q, r.code, r.body)
		}
		return len(r.json(t)["records"].([]any))
	}
	if n := count("max_bytes=1&limit=50"); n != 1 {
		t.Fatalf("max_bytes=1 gave %d records, want exactly 1", n)
	}
	r0 := textRec(0)
	size := r0.Msgsize()
	if n := count(fmt.Sprintf("max_bytes=%d&limit=50", 3*size)); n != 3 {
		t.Fatalf("max_bytes of 3 records gave %d", n)
	}
	// Capped by Config.MaxBytes.
	if n := count("max_bytes=1000000&limit=50"); n != 2048/size {
		t.Fatalf("capped max_bytes gave %d records, want %d", n, 2048/size)
	}
}

// TestWaitWakesOnAppend long-polls at the end of a partition and appends
// once the request is known to be waiting (the gauge says so): the answer
// must carry the new record well before the wait ends.
func TestWaitWakesOnAppend(t *testing.T) {
	e := newEnv(t, nil, nil)
	appendN(t, e.log, 0, 5, textRec)
	type result struct {
		r   resp
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		res, err := http.Get(e.url + "/v1/topics/t/partitions/0/records?offset=5&wait=20s")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		done <- result{r: resp{code: res.StatusCode, body: b}, err: err, at: time.Now()}
	}()
	waitFor(t, 10*time.Second, func() error {
		if g := gauge(t, e.reg, "outpost_api_long_polls_waiting"); g != 1 {
			return fmt.Errorf("%v long-polls waiting, want 1", g)
		}
		return nil
	})
	t0 := time.Now()
	appendN(t, e.log, 0, 1, func(int) elog.Record { return elog.Record{Value: []byte("late")} })
	var res result
	select {
	case res = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the long-poll did not return after an append")
	}
	if res.err != nil || res.r.code != 200 {
		t.Fatalf("%v %d %s", res.err, res.r.code, res.r.body)
	}
	t.Logf("append to answer: %v", res.at.Sub(t0))
	m := res.r.json(t)
	recs := m["records"].([]any)
	if len(recs) != 1 || recs[0].(map[string]any)["value_text"] != "late" || m["next_offset"] != 6.0 {
		t.Fatalf("long-poll answer %s", res.r.body)
	}
	if g := gauge(t, e.reg, "outpost_api_long_polls_waiting"); g != 0 {
		t.Fatalf("%v long-polls still counted as waiting", g)
	}
}

func TestWaitTimesOut(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxWait = 300 * time.Millisecond }, nil)
	for _, q := range []string{"wait=200ms", "wait=1h"} { // 1h is capped at MaxWait
		t0 := time.Now()
		r := get(t, e.url+"/v1/topics/t/partitions/1/records?offset=0&"+q)
		d := time.Since(t0)
		m := r.json(t)
		if r.code != 200 || len(m["records"].([]any)) != 0 || m["next_offset"] != 0.0 {
			t.Fatalf("%s: %d %s", q, r.code, r.body)
		}
		if d < 200*time.Millisecond || d > 5*time.Second {
			t.Fatalf("%s answered after %v", q, d)
		}
		t.Logf("%s: empty answer after %v", q, d)
	}
}

func TestTooManyWaiters(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxWaiters = 1 }, nil)
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/v1/topics/t/partitions/0/records?wait=20s", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, func() error {
		if g := gauge(t, e.reg, "outpost_api_long_polls_waiting"); g != 1 {
			return fmt.Errorf("%v waiting", g)
		}
		return nil
	})
	r := get(t, e.url+"/v1/topics/t/partitions/0/records?wait=1s")
	if r.code != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("second long-poll: %d %s", r.code, r.body)
	}
	// A read without wait still works.
	if r := get(t, e.url+"/v1/topics/t/partitions/0/records"); r.code != 200 {
		t.Fatalf("plain read: %d %s", r.code, r.body)
	}
	cancel() // the client leaves: the waiter is released
	waitFor(t, 10*time.Second, func() error {
		if g := gauge(t, e.reg, "outpost_api_long_polls_waiting"); g != 0 {
			return fmt.Errorf("%v waiting after the client left", g)
		}
		return nil
	})
}

func TestRecordsErrors(t *testing.T) {
	e := newEnv(t, nil, func(c *elog.Config) { c.Now = nil })
	appendN(t, e.log, 0, 200, textRec)
	// Retention: drop the oldest segments so that start_offset > 0.
	if err := e.log.CreateTopic("t", elog.TopicConfig{Partitions: 2, RetentionBytes: 8192}); err != nil {
		t.Fatal(err)
	}
	e.log.EnforceRetention(bg)
	p, _ := e.log.Partition("t", 0)
	start, end := p.StartOffset(), p.EndOffset()
	if start == 0 {
		t.Fatal("retention deleted nothing; the test needs start_offset > 0")
	}
	base := e.url + "/v1/topics/t/partitions/0/records"
	cases := []struct {
		name, url string
		code      int
		mention   string
	}{
		{"unknown topic", e.url + "/v1/topics/nope/partitions/0/records", 404, "nope"},
		{"unknown partition", e.url + "/v1/topics/t/partitions/9/records", 404, "partition"},
		{"partition not a number", e.url + "/v1/topics/t/partitions/x/records", 400, "partition"},
		{"negative partition", e.url + "/v1/topics/t/partitions/-1/records", 400, "partition"},
		{"offset not a number", base + "?offset=abc", 400, "offset"},
		{"negative offset", base + "?offset=-1", 400, "offset"},
		{"limit zero", base + "?limit=0", 400, "limit"},
		{"limit not a number", base + "?limit=ten", 400, "limit"},
		{"bad wait", base + "?wait=forever", 400, "wait"},
		{"negative wait", base + "?wait=-1s", 400, "wait"},
		{"bad max_bytes", base + "?max_bytes=0", 400, "max_bytes"},
		{"unknown parameter", base + "?ofset=3", 400, "ofset"},
		{"repeated parameter", base + "?offset=1&offset=2", 400, "offset"},
		{"below start", fmt.Sprintf("%s?offset=%d", base, start-1), 416, "start_offset"},
		{"beyond end", fmt.Sprintf("%s?offset=%d", base, end+1), 416, "end_offset"},
		{"unknown route", e.url + "/v2/things", 404, "/v1/topics"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := get(t, c.url)
			if r.code != c.code {
				t.Fatalf("%d %s, want %d", r.code, r.body, c.code)
			}
			if r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("error Content-Type %q", r.header.Get("Content-Type"))
			}
			m := r.json(t)
			msg, _ := m["error"].(string)
			if !strings.Contains(msg, c.mention) {
				t.Fatalf("error %q does not mention %q", msg, c.mention)
			}
			if c.code == 416 && (m["start_offset"] != float64(start) || m["end_offset"] != float64(end)) {
				t.Fatalf("416 body %v, want start_offset %d end_offset %d", m, start, end)
			}
		})
	}
	// Reading from the start after a 416 works.
	r := get(t, fmt.Sprintf("%s?offset=%d&limit=1", base, start))
	if r.code != 200 || r.json(t)["records"].([]any)[0].(map[string]any)["offset"] != float64(start) {
		t.Fatalf("read at start_offset: %d %s", r.code, r.body)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/topics", nil)
	if r := do(t, req); r.code != 405 || r.header.Get("Allow") == "" || !strings.Contains(r.json(t)["error"].(string), "GET") {
		t.Fatalf("POST: %d %s %v", r.code, r.body, r.header)
	}
}

func TestToken(t *testing.T) {
	const token = "s3cret-token"
	e := newEnv(t, func(c *api.Config) { c.Token = token }, nil)
	if r := get(t, e.url+"/healthz"); r.code != 200 || string(r.body) != "ok\n" {
		t.Fatalf("healthz without token: %d %q", r.code, r.body)
	}
	for _, path := range []string{"/v1/topics", "/readyz", "/metrics", "/v1/topics/t/partitions/0/records", "/nothing-here", "/healthz/"} {
		r := get(t, e.url+path)
		if r.code != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(r.json(t)["error"].(string), "Authorization: Bearer") {
			t.Errorf("%s without token: %d %s", path, r.code, r.body)
		}
		for _, bad := range []string{"Bearer wrong", "Bearer " + token + "x", "Basic " + token, token, "Bearer"} {
			if r := get(t, e.url+path, "Authorization", bad); r.code != 401 {
				t.Errorf("%s with %q: %d", path, bad, r.code)
			}
		}
	}
	for _, good := range []string{"Bearer " + token, "bearer " + token} {
		if r := get(t, e.url+"/v1/topics", "Authorization", good); r.code != 200 {
			t.Fatalf("with %q: %d %s", good, r.code, r.body)
		}
	}
	r := get(t, e.url+"/metrics", "Authorization", "Bearer "+token)
	if r.code != 200 {
		t.Fatalf("metrics with token: %d", r.code)
	}
	if !strings.Contains(string(r.body), `outpost_api_requests_total{code="401",route="unauthorized"}`) {
		t.Fatalf("refused requests are not counted")
	}
}

// TestOpenPaths: the dashboard's page loads without the token (it asks
// for it); its data does not, and a path that is only a prefix of an open
// one is not open.
func TestOpenPaths(t *testing.T) {
	const token = "s3cret-token"
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("page")) })
	e := newEnv(t, func(c *api.Config) {
		c.Token = token
		c.OpenPaths = []string{"/", "/ui/app.js"}
		c.Routes = map[string]http.Handler{"GET /{$}": ok, "GET /ui/app.js": ok, "GET /ui/events": ok}
	}, nil)
	for _, path := range []string{"/", "/ui/app.js"} {
		if r := get(t, e.url+path); r.code != 200 || string(r.body) != "page" {
			t.Errorf("%s without token: %d %s", path, r.code, r.body)
		}
	}
	for _, path := range []string{"/ui/events", "/ui/app.js/x", "/v1/topics"} {
		if r := get(t, e.url+path); r.code != 401 {
			t.Errorf("%s without token: %d, want 401", path, r.code)
		}
	}
	if r := get(t, e.url+"/ui/events", "Authorization", "Bearer "+token); r.code != 200 {
		t.Errorf("/ui/events with token: %d", r.code)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil, nil)
	appendN(t, e.log, 0, 3, textRec)
	get(t, e.url+"/v1/topics")
	r := get(t, e.url+"/metrics")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	for _, want := range []string{"outpost_log_appended_records_total 3", "outpost_log_fsync_seconds_bucket", `outpost_api_requests_total{code="200",route="GET /v1/topics"} 1`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Without a Gatherer there is no /metrics.
	e2 := newEnv(t, func(c *api.Config) { c.Gatherer = nil }, nil)
	if r := get(t, e2.url+"/metrics"); r.code != 404 {
		t.Fatalf("/metrics without Gatherer: %d", r.code)
	}
}

// failingFile fails every Sync once armed, to make a partition
// sticky-failed.
type failingFile struct {
	elog.File
	armed *atomic.Bool
}

func (f failingFile) Sync() error {
	if f.armed.Load() {
		return errors.New("injected fdatasync failure")
	}
	return f.File.Sync()
}

func TestReadyz(t *testing.T) {
	var notReady atomic.Pointer[error]
	var armed atomic.Bool
	e := newEnv(t, func(c *api.Config) {
		c.Ready = func() error {
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		}
	}, func(c *elog.Config) {
		c.OpenFile = func(name string, flag int, perm os.FileMode) (elog.File, error) {
			f, err := elog.OSOpenFile(name, flag, perm)
			if err != nil {
				return nil, err
			}
			return failingFile{File: f, armed: &armed}, nil
		}
	})
	if r := get(t, e.url+"/readyz"); r.code != 200 || string(r.body) != "ok\n" {
		t.Fatalf("ready: %d %q", r.code, r.body)
	}
	err := errors.New("upstream: not connected yet")
	notReady.Store(&err)
	r := get(t, e.url+"/readyz")
	if r.code != 503 || !strings.Contains(r.json(t)["error"].(string), "upstream: not connected yet") {
		t.Fatalf("Ready failing: %d %s", r.code, r.body)
	}
	notReady.Store(nil)
	armed.Store(true)
	p, _ := e.log.Partition("t", 1)
	if _, err := p.Append(bg, []elog.Record{{Value: []byte("x")}}); err == nil {
		t.Fatal("append succeeded despite the failing fsync")
	}
	r = get(t, e.url+"/readyz")
	if r.code != 503 || !strings.Contains(r.json(t)["error"].(string), "partition failed") {
		t.Fatalf("log failed: %d %s", r.code, r.body)
	}
	// The failure also shows on the partition.
	p1 := get(t, e.url+"/v1/topics/t/partitions/1").json(t)
	if !strings.Contains(fmt.Sprint(p1["error"]), "injected fdatasync failure") {
		t.Fatalf("failed partition: %v", p1)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := api.New(api.Config{}); err == nil || !strings.Contains(err.Error(), "Log") {
		t.Fatalf("New without Log: %v", err)
	}
	e := newEnv(t, nil, nil)
	for field, c := range map[string]api.Config{
		"MaxWait":    {Log: e.log, MaxWait: -time.Second},
		"MaxLimit":   {Log: e.log, MaxLimit: -1},
		"MaxBytes":   {Log: e.log, MaxBytes: 10},
		"MaxWaiters": {Log: e.log, MaxWaiters: -1},
	} {
		if _, err := api.New(c); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("New(%s bad) = %v", field, err)
		}
	}
	if err := api.DefaultConfig().Validate(); err == nil {
		t.Fatal("DefaultConfig without Log validated")
	}
}

// TestWaitLogClosed: a long-poll waiting while the log closes (node
// shutdown) gets 503 at once instead of hanging until its wait ends.
func TestWaitLogClosed(t *testing.T) {
	e := newEnv(t, nil, nil)
	done := make(chan resp, 1)
	go func() {
		res, err := http.Get(e.url + "/v1/topics/t/partitions/0/records?wait=20s")
		if err != nil {
			done <- resp{code: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- resp{code: res.StatusCode, body: b}
	}()
	waitFor(t, 10*time.Second, func() error {
		if g := gauge(t, e.reg, "outpost_api_long_polls_waiting"); g != 1 {
			return fmt.Errorf("%v waiting", g)
		}
		return nil
	})
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.code != 503 || !strings.Contains(r.json(t)["error"].(string), "retry") {
			t.Fatalf("long-poll after close: %d %s", r.code, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long-poll still waiting after the log closed")
	}
	// Other routes say the node is going away too.
	if r := get(t, e.url+"/v1/topics/t/partitions/0/records"); r.code != 503 {
		t.Fatalf("records after close: %d %s", r.code, r.body)
	}
}

func TestHead(t *testing.T) {
	e := newEnv(t, nil, nil)
	req, _ := http.NewRequest(http.MethodHead, e.url+"/v1/topics", nil)
	if r := do(t, req); r.code != 200 || len(r.body) != 0 {
		t.Fatalf("HEAD: %d %q", r.code, r.body)
	}
}

// TestWaitServerShutdown: with BaseContext canceled at shutdown, a waiting
// long-poll answers 503 at once and Shutdown does not wait for its wait.
func TestWaitServerShutdown(t *testing.T) {
	e := newEnv(t, nil, nil)
	reg := prometheus.NewRegistry()
	h, err := api.New(api.Config{Log: e.log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(bg)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.BaseContext = func(net.Listener) context.Context { return runCtx }
	srv.Start()
	defer srv.Close()
	done := make(chan resp, 1)
	go func() {
		res, err := http.Get(srv.URL + "/v1/topics/t/partitions/0/records?wait=20s")
		if err != nil {
			done <- resp{code: -1, body: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- resp{code: res.StatusCode, body: b}
	}()
	waitFor(t, 10*time.Second, func() error {
		if g := gauge(t, reg, "outpost_api_long_polls_waiting"); g != 1 {
			return fmt.Errorf("%v waiting", g)
		}
		return nil
	})
	t0 := time.Now()
	stop()
	shutCtx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := srv.Config.Shutdown(shutCtx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r := <-done
	if r.code != 503 || time.Since(t0) > 5*time.Second {
		t.Fatalf("long-poll at shutdown: %d %s after %v", r.code, r.body, time.Since(t0))
	}
}
