package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// TestMain fails the run if a registry goroutine outlives its test (a
// stand-in for goleak.VerifyTestMain, which is not in go.mod).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			var leaked []string
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "outpost/core/schema.(*Registry)") {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "registry goroutines leaked:\n%s\n", strings.Join(leaked, "\n\n"))
				code = 1
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// testRegistry is a running registry behind an httptest server.
type testRegistry struct {
	*Registry
	url string
	reg *prometheus.Registry
}

// startRegistry runs a registry over js until the test ends and waits
// until it is ready.
func startRegistry(t *testing.T, js jetstream.JetStream, cfg Config) *testRegistry {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = wire.DefaultPrefix
	}
	preg := prometheus.NewPedanticRegistry()
	r, err := New(js, cfg, nil, preg)
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
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	polltest.Until(t, 20*time.Second, func() error {
		if !r.Ready() {
			return errors.New("registry not ready")
		}
		return nil
	})
	return &testRegistry{Registry: r, url: srv.URL, reg: preg}
}

// call sends a request and returns the status and the body.
func call(t testing.TB, method, url string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(j))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("%s %s: Content-Type %q", method, url, ct)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// expect checks status and that the body equals want (JSON compared
// semantically) or, for an error, carries the error code.
func expect(t testing.TB, method, url string, body any, status int, want string) string {
	t.Helper()
	code, got := call(t, method, url, body)
	if code != status {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, url, code, status, got)
	}
	if want == "" {
		return got
	}
	if strings.HasPrefix(want, "error_code:") {
		var e struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(got), &e); err != nil || fmt.Sprint(e.Code) != strings.TrimPrefix(want, "error_code:") || e.Message == "" {
			t.Fatalf("%s %s: body %s, want %s with a message", method, url, got, want)
		}
		return got
	}
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, url, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if gj, wj := mustJSON(g), mustJSON(w); gj != wj {
		t.Fatalf("%s %s:\n got %s\nwant %s", method, url, gj, wj)
	}
	return got
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const (
	tempV1 = `{"type":"object","properties":{"c":{"type":"number"}},"additionalProperties":false}`
	tempV2 = `{"type":"object","properties":{"c":{"type":"number"},"unit":{"type":"string"}},"additionalProperties":false}`
)

func sch(text string) map[string]any { return map[string]any{"schema": text, "schemaType": "JSON"} }

// TestAPI walks the endpoints through a subject's life: register, reuse,
// lookup, versions, config, compatibility refusal, check, soft and
// permanent delete, and that IDs and versions are never reused.
func TestAPI(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{})
	u := r.url

	expect(t, "GET", u+"/schemas/types", nil, 200, `["JSON","AVRO"]`)
	expect(t, "GET", u+"/subjects", nil, 200, `[]`)
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(tempV1), 200, `{"id":1}`)
	// The same schema, spaced differently, is the same version and ID.
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(strings.ReplaceAll(tempV1, ":", " : ")), 200, `{"id":1}`)
	// Under another subject it keeps its ID.
	expect(t, "POST", u+"/subjects/other/versions", sch(tempV1), 200, `{"id":1}`)
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(tempV2), 200, `{"id":2}`)

	expect(t, "GET", u+"/subjects", nil, 200, `["other","temps-value"]`)
	expect(t, "GET", u+"/subjects?subjectPrefix=temps", nil, 200, `["temps-value"]`)
	expect(t, "GET", u+"/subjects/temps-value/versions", nil, 200, `[1,2]`)
	expect(t, "GET", u+"/subjects/temps-value/versions/1", nil, 200,
		`{"subject":"temps-value","version":1,"id":1,"schemaType":"JSON","schema":`+mustJSON(tempV1)+`}`)
	expect(t, "GET", u+"/subjects/temps-value/versions/latest", nil, 200,
		`{"subject":"temps-value","version":2,"id":2,"schemaType":"JSON","schema":`+mustJSON(tempV2)+`}`)
	if got := expect(t, "GET", u+"/subjects/temps-value/versions/-1/schema", nil, 200, ""); got != tempV2 {
		t.Fatalf("raw schema %s", got)
	}
	expect(t, "GET", u+"/schemas/ids/2", nil, 200, `{"schemaType":"JSON","schema":`+mustJSON(tempV2)+`}`)
	expect(t, "GET", u+"/schemas/ids/2?fetchMaxId=true", nil, 200, `{"schemaType":"JSON","schema":`+mustJSON(tempV2)+`,"maxId":2}`)
	if got := expect(t, "GET", u+"/schemas/ids/1/schema", nil, 200, ""); got != tempV1 {
		t.Fatalf("raw schema by id %s", got)
	}
	expect(t, "GET", u+"/schemas/ids/1/subjects", nil, 200, `["other","temps-value"]`)
	expect(t, "GET", u+"/schemas/ids/1/versions", nil, 200, `[{"subject":"other","version":1},{"subject":"temps-value","version":1}]`)
	expect(t, "GET", u+"/schemas?subjectPrefix=temps&latestOnly=true", nil, 200,
		`[{"subject":"temps-value","version":2,"id":2,"schemaType":"JSON","schema":`+mustJSON(tempV2)+`}]`)
	expect(t, "POST", u+"/subjects/temps-value", sch(tempV1), 200,
		`{"subject":"temps-value","version":1,"id":1,"schemaType":"JSON","schema":`+mustJSON(tempV1)+`}`)

	// Not found, by code.
	expect(t, "GET", u+"/subjects/nope/versions", nil, 404, "error_code:40401")
	expect(t, "GET", u+"/subjects/temps-value/versions/9", nil, 404, "error_code:40402")
	expect(t, "GET", u+"/schemas/ids/99", nil, 404, "error_code:40403")
	expect(t, "POST", u+"/subjects/temps-value", sch(`{"type":"string"}`), 404, "error_code:40403")
	expect(t, "GET", u+"/subjects/temps-value/versions/0", nil, 422, "error_code:42202")
	expect(t, "GET", u+"/subjects/temps-value/versions/x", nil, 422, "error_code:42202")
	expect(t, "GET", u+"/nothing", nil, 404, "error_code:404")

	// Config: global default BACKWARD; a subject has none until set.
	expect(t, "GET", u+"/config", nil, 200, `{"compatibilityLevel":"BACKWARD"}`)
	expect(t, "GET", u+"/config/temps-value", nil, 404, "error_code:40408")
	expect(t, "GET", u+"/config/temps-value?defaultToGlobal=true", nil, 200, `{"compatibilityLevel":"BACKWARD"}`)
	expect(t, "PUT", u+"/config/temps-value", map[string]string{"compatibility": "FULL"}, 200, `{"compatibility":"FULL"}`)
	expect(t, "GET", u+"/config/temps-value", nil, 200, `{"compatibilityLevel":"FULL"}`)
	expect(t, "PUT", u+"/config", map[string]string{"compatibility": "SIDEWAYS"}, 422, "error_code:42203")

	// Removing unit from the closed model: not FULL compatible (v2's data
	// has unit). 409, and the check endpoint says why.
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(tempV1+" "), 200, `{"id":1}`) // v1 text, but v1 is not the latest...
	expect(t, "GET", u+"/subjects/temps-value/versions", nil, 200, `[1,2]`)                 // ...it is still a live version: reused
	v3 := `{"type":"object","properties":{"c":{"type":"integer"}},"additionalProperties":false}`
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(v3), 409, "error_code:409")
	expect(t, "POST", u+"/compatibility/subjects/temps-value/versions/latest", sch(v3), 200, `{"is_compatible":false}`)
	got := expect(t, "POST", u+"/compatibility/subjects/temps-value/versions?verbose=true", sch(v3), 200, "")
	if !strings.Contains(got, "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL") || !strings.Contains(got, "FULL") {
		t.Fatalf("verbose check: %s", got)
	}
	expect(t, "POST", u+"/compatibility/subjects/temps-value/versions/1", sch(tempV1), 200, `{"is_compatible":true}`)
	expect(t, "POST", u+"/compatibility/subjects/temps-value/versions/1", sch(tempV2), 200, `{"is_compatible":false}`) // FULL: v1 is closed, without unit
	expect(t, "DELETE", u+"/config/temps-value", nil, 200, `{"compatibilityLevel":"FULL","compatibility":"FULL"}`)
	expect(t, "DELETE", u+"/config/temps-value", nil, 404, "error_code:40408")

	// Invalid schemas: the parser's message, 42201.
	got = expect(t, "POST", u+"/subjects/bad/versions", sch(`{"type":"object","properties":{"a":{"type":"strin"}}}`), 422, "error_code:42201")
	if !strings.Contains(got, "strin") {
		t.Fatalf("invalid schema message lacks the parser's detail: %s", got)
	}
	expect(t, "POST", u+"/subjects/bad/versions", map[string]string{"schema": `{"type":"record","name":"x","fields":[{"name":"a"}]}`}, 422, "error_code:42201")
	expect(t, "POST", u+"/subjects/bad/versions", map[string]string{"schema": `{}`, "schemaType": "PROTOBUF"}, 422, "error_code:42201")
	expect(t, "GET", u+"/subjects/bad/versions", nil, 404, "error_code:40401")

	// Soft delete, then permanent; versions and IDs are not reused.
	expect(t, "DELETE", u+"/subjects/temps-value/versions/2?permanent=true", nil, 404, "error_code:40407")
	expect(t, "DELETE", u+"/subjects/temps-value/versions/2", nil, 200, `2`)
	expect(t, "DELETE", u+"/subjects/temps-value/versions/2", nil, 404, "error_code:40406")
	expect(t, "GET", u+"/subjects/temps-value/versions", nil, 200, `[1]`)
	expect(t, "GET", u+"/subjects/temps-value/versions?deleted=true", nil, 200, `[1,2]`)
	expect(t, "GET", u+"/subjects/temps-value/versions/2?deleted=true", nil, 200,
		`{"subject":"temps-value","version":2,"id":2,"schemaType":"JSON","schema":`+mustJSON(tempV2)+`}`)
	expect(t, "DELETE", u+"/subjects/temps-value?permanent=true", nil, 404, "error_code:40405")
	expect(t, "DELETE", u+"/subjects/temps-value", nil, 200, `[1]`)
	expect(t, "DELETE", u+"/subjects/temps-value", nil, 404, "error_code:40404")
	expect(t, "GET", u+"/subjects", nil, 200, `["other"]`)
	expect(t, "GET", u+"/subjects?deleted=true", nil, 200, `["other","temps-value"]`)
	expect(t, "GET", u+"/subjects?deletedOnly=true", nil, 200, `["temps-value"]`)
	expect(t, "DELETE", u+"/subjects/temps-value?permanent=true", nil, 200, `[1,2]`)
	expect(t, "GET", u+"/subjects?deleted=true", nil, 200, `["other"]`)
	expect(t, "GET", u+"/schemas/ids/2", nil, 404, "error_code:40403")
	expect(t, "GET", u+"/schemas/ids/1", nil, 200, "") // still used by "other"
	// Registered again: the old ID (same schema), a new version number.
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(tempV2), 200, `{"id":2}`)
	expect(t, "GET", u+"/subjects/temps-value/versions", nil, 200, `[3]`)
	// A new schema gets a new ID, above every earlier one.
	expect(t, "POST", u+"/subjects/temps-value/versions", sch(`{"type":"object","properties":{"c":{"type":"number"},"unit":{"type":"string"},"site":{"type":"string"}},"additionalProperties":false}`), 200, `{"id":3}`)
}

// TestModes: READONLY refuses writes, IMPORT takes explicit IDs and
// versions and moves the ID counter past them.
func TestModes(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{})
	u := r.url

	expect(t, "GET", u+"/mode", nil, 200, `{"mode":"READWRITE"}`)
	expect(t, "PUT", u+"/mode/s", map[string]string{"mode": "READONLY"}, 200, `{"mode":"READONLY"}`)
	expect(t, "POST", u+"/subjects/s/versions", sch(`{"type":"string"}`), 422, "error_code:42205")
	expect(t, "DELETE", u+"/mode/s", nil, 200, `{"mode":"READONLY"}`)
	expect(t, "GET", u+"/mode/s", nil, 404, "error_code:40409")
	expect(t, "PUT", u+"/mode", map[string]string{"mode": "BOGUS"}, 422, "error_code:42204")

	expect(t, "POST", u+"/subjects/s/versions", map[string]any{"schema": `{"type":"string"}`, "schemaType": "JSON", "id": 7, "version": 3}, 422, "error_code:42205")
	expect(t, "PUT", u+"/mode", map[string]string{"mode": "IMPORT"}, 200, `{"mode":"IMPORT"}`)
	expect(t, "POST", u+"/subjects/s/versions", sch(`{"type":"string"}`), 422, "error_code:42205")
	expect(t, "POST", u+"/subjects/s/versions", map[string]any{"schema": `{"type":"string"}`, "schemaType": "JSON", "id": 7, "version": 3}, 200, `{"id":7}`)
	expect(t, "POST", u+"/subjects/s/versions", map[string]any{"schema": `{"type":"integer"}`, "schemaType": "JSON", "id": 7, "version": 4}, 422, "error_code:42207")
	expect(t, "GET", u+"/subjects/s/versions/3", nil, 200, `{"subject":"s","version":3,"id":7,"schemaType":"JSON","schema":"{\"type\":\"string\"}"}`)
	expect(t, "PUT", u+"/mode", map[string]string{"mode": "IMPORT"}, 422, "error_code:42205") // not empty now
	expect(t, "PUT", u+"/mode", map[string]string{"mode": "READWRITE"}, 200, `{"mode":"READWRITE"}`)
	// After the import, new IDs and versions continue above the imported.
	expect(t, "POST", u+"/subjects/s/versions", sch(`{"type":["string","null"]}`), 200, `{"id":8}`)
	expect(t, "GET", u+"/subjects/s/versions", nil, 200, `[3,4]`)
}

// TestReferences: a schema referencing another, referencedby, and that a
// referenced version cannot be deleted.
func TestReferences(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{})
	u := r.url

	addr := `{"type":"object","properties":{"city":{"type":"string"}}}`
	expect(t, "POST", u+"/subjects/address/versions", sch(addr), 200, `{"id":1}`)
	person := map[string]any{"schemaType": "JSON",
		"schema":     `{"type":"object","properties":{"home":{"$ref":"address.json"}}}`,
		"references": []map[string]any{{"name": "address.json", "subject": "address", "version": 1}}}
	expect(t, "POST", u+"/subjects/person/versions", person, 200, `{"id":2}`)
	expect(t, "GET", u+"/subjects/address/versions/1/referencedby", nil, 200, `[2]`)
	expect(t, "GET", u+"/subjects/person/versions/1", nil, 200, `{"subject":"person","version":1,"id":2,"schemaType":"JSON","schema":"{\"type\":\"object\",\"properties\":{\"home\":{\"$ref\":\"address.json\"}}}","references":[{"name":"address.json","subject":"address","version":1}]}`)
	expect(t, "DELETE", u+"/subjects/address/versions/1", nil, 422, "error_code:42206")

	// A reference to nothing, and a $ref that is not declared.
	bad := map[string]any{"schemaType": "JSON", "schema": `{"$ref":"x.json"}`,
		"references": []map[string]any{{"name": "x.json", "subject": "nope", "version": 1}}}
	expect(t, "POST", u+"/subjects/p2/versions", bad, 422, "error_code:42201")
	expect(t, "POST", u+"/subjects/p2/versions", sch(`{"$ref":"https://example.com/elsewhere.json"}`), 422, "error_code:42201")

	// Avro: a record type from another subject, by name.
	expect(t, "POST", u+"/subjects/loc/versions", map[string]any{"schema": `{"type":"record","name":"Loc","namespace":"o","fields":[{"name":"lat","type":"double"}]}`}, 200, `{"id":3}`)
	expect(t, "POST", u+"/subjects/reading/versions", map[string]any{
		"schema":     `{"type":"record","name":"Reading","namespace":"o","fields":[{"name":"at","type":"o.Loc"}]}`,
		"references": []map[string]any{{"name": "o.Loc", "subject": "loc", "version": 1}}}, 200, `{"id":4}`)
	// Evolving the referring schema compares with references resolved.
	expect(t, "POST", u+"/subjects/reading/versions", map[string]any{
		"schema":     `{"type":"record","name":"Reading","namespace":"o","fields":[{"name":"at","type":"o.Loc"},{"name":"v","type":"double"}]}`,
		"references": []map[string]any{{"name": "o.Loc", "subject": "loc", "version": 1}}}, 409, "error_code:409")
}

// TestHostileRequests: huge, deep and malformed bodies get a clear 4xx and
// change nothing.
func TestHostileRequests(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{MaxSchemaBytes: 4 << 10})
	u := r.url

	expect(t, "POST", u+"/subjects/s/versions", `{"schema":"`+strings.Repeat("x", 200<<10)+`"}`, 413, "error_code:413")
	expect(t, "POST", u+"/subjects/s/versions", `{"schema": `, 400, "error_code:400")
	expect(t, "POST", u+"/subjects/s/versions", `[1,2,3]`, 400, "error_code:400")
	expect(t, "POST", u+"/subjects/s/versions", sch(`{"type":"string","description":"`+strings.Repeat("a", 5<<10)+`"}`), 422, "error_code:42209")
	deep := strings.Repeat(`{"items":`, 200) + `{}` + strings.Repeat(`}`, 200)
	got := expect(t, "POST", u+"/subjects/s/versions", sch(deep), 422, "error_code:42201")
	if !strings.Contains(got, "nested more than") {
		t.Fatalf("deep schema: %s", got)
	}
	expect(t, "POST", u+"/subjects/s/versions", sch(`{"type":"string"} {"type":"string"}`), 422, "error_code:42201")
	expect(t, "POST", u+"/subjects/s/versions", sch(`not json`), 422, "error_code:42201")
	expect(t, "POST", u+"/subjects/s/versions", map[string]string{"schema": ""}, 422, "error_code:42201")
	expect(t, "POST", u+"/subjects/"+strings.Repeat("n", 300)+"/versions", sch(`{"type":"string"}`), 422, "error_code:42208")
	expect(t, "POST", u+"/subjects/a%01b/versions", sch(`{"type":"string"}`), 422, "error_code:42208")
	expect(t, "GET", u+"/schemas/ids/abc", nil, 404, "error_code:40403")
	expect(t, "GET", u+"/schemas/ids/99999999999", nil, 404, "error_code:40403")
	expect(t, "GET", u+"/subjects", nil, 200, `[]`)
}

// TestSubjectNamesWithAnyCharacter: subjects are free text; the KV key
// escapes them, and the API maps them back.
func TestSubjectNamesWithAnyCharacter(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{})
	for i, name := range []string{"a.b", "with space", "slash/in/it", "ünïcödé", "x=2E", ":.ctx:sub"} {
		esc := pathEscape(name)
		expect(t, "POST", r.url+"/subjects/"+esc+"/versions", sch(fmt.Sprintf(`{"type":"string","maxLength":%d}`, i+1)), 200, fmt.Sprintf(`{"id":%d}`, i+1))
		expect(t, "GET", r.url+"/subjects/"+esc+"/versions/1", nil, 200, "")
	}
	expect(t, "GET", r.url+"/subjects", nil, 200, `[":.ctx:sub","a.b","slash/in/it","with space","x=2E","ünïcödé"]`)
}

func pathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
