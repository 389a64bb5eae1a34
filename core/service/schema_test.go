package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/outpost-edge/outpost/core/natstest"
)

// TestSchemaRegistryWithFranzGo drives core's schema registry with a
// client nobody on the team wrote, franz-go's pkg/sr, against a running
// core (embedded NATS, bearer token): register, fetch by ID and version,
// lookup, config, a compatibility refusal and check, mode, soft and
// permanent delete, references. core's HTTP address is the
// schema.registry.url; the client speaks to the root paths.
func TestSchemaRegistryWithFranzGo(t *testing.T) {
	dir := t.TempDir()
	token := "0123456789abcdef0123456789abcdef"
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.DataDir = filepath.Join(dir, "data")
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.TokenFile = tokenFile
	svc := startCore(t, cfg)
	base := "http://" + svc.HTTPAddr().String()

	// Without the token the registry is closed like the rest of the API.
	anon, err := sr.NewClient(sr.URLs(base))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := anon.Subjects(ctx); err == nil {
		t.Fatal("subjects without a token: no error")
	}

	cl, err := sr.NewClient(sr.URLs(base), sr.BearerToken(token))
	if err != nil {
		t.Fatal(err)
	}
	// Ready: the registry answers once it has loaded its bucket.
	natstest.WaitFor(t, 20*time.Second, func() error {
		_, err := cl.Subjects(ctx)
		return err
	})

	types, err := cl.SupportedTypes(ctx)
	if err != nil || !slices.Contains(types, sr.TypeJSON) || !slices.Contains(types, sr.TypeAvro) {
		t.Fatalf("types %v %v", types, err)
	}

	v1 := sr.Schema{Type: sr.TypeJSON, Schema: `{"type":"object","properties":{"c":{"type":"number"}},"additionalProperties":false}`}
	v2 := sr.Schema{Type: sr.TypeJSON, Schema: `{"type":"object","properties":{"c":{"type":"number"},"unit":{"type":"string"}},"additionalProperties":false}`}
	s1, err := cl.CreateSchema(ctx, "temps-value", v1)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Subject != "temps-value" || s1.Version != 1 || s1.ID < 1 || s1.Type != sr.TypeJSON || s1.Schema.Schema != v1.Schema {
		t.Fatalf("created %+v", s1)
	}
	s2, err := cl.CreateSchema(ctx, "temps-value", v2)
	if err != nil || s2.Version != 2 || s2.ID == s1.ID {
		t.Fatalf("second version %+v %v", s2, err)
	}
	again, err := cl.CreateSchema(ctx, "temps-value", v2)
	if err != nil || again.ID != s2.ID || again.Version != 2 {
		t.Fatalf("registering again %+v %v", again, err)
	}

	byID, err := cl.SchemaByID(ctx, s1.ID)
	if err != nil || byID.Schema != v1.Schema || byID.Type != sr.TypeJSON {
		t.Fatalf("by id %+v %v", byID, err)
	}
	text, err := cl.SchemaTextByID(ctx, s2.ID)
	if err != nil || text != v2.Schema {
		t.Fatalf("text by id %q %v", text, err)
	}
	latest, err := cl.SchemaByVersion(ctx, "temps-value", -1)
	if err != nil || latest.Version != 2 || latest.ID != s2.ID {
		t.Fatalf("latest %+v %v", latest, err)
	}
	versions, err := cl.SubjectVersions(ctx, "temps-value")
	if err != nil || !slices.Equal(versions, []int{1, 2}) {
		t.Fatalf("versions %v %v", versions, err)
	}
	found, err := cl.LookupSchema(ctx, "temps-value", v1)
	if err != nil || found.Version != 1 || found.ID != s1.ID {
		t.Fatalf("lookup %+v %v", found, err)
	}
	subjects, err := cl.SubjectsByID(ctx, s1.ID)
	if err != nil || !slices.Equal(subjects, []string{"temps-value"}) {
		t.Fatalf("subjects by id %v %v", subjects, err)
	}

	// Config: global BACKWARD by default; FULL on the subject.
	if res := cl.Compatibility(ctx); res[0].Err != nil || res[0].Level != sr.CompatBackward {
		t.Fatalf("global compatibility %+v", res[0])
	}
	if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, "temps-value"); res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Fatalf("set compatibility %+v", res[0])
	}
	if res := cl.Compatibility(ctx, "temps-value"); res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Fatalf("subject compatibility %+v", res[0])
	}

	// A type change is refused with 409, and the check says why.
	v3 := sr.Schema{Type: sr.TypeJSON, Schema: `{"type":"object","properties":{"c":{"type":"string"},"unit":{"type":"string"}},"additionalProperties":false}`}
	_, err = cl.CreateSchema(ctx, "temps-value", v3)
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 409 || re.ErrorCode != 409 || !strings.Contains(re.Message, "TYPE_CHANGED") {
		t.Fatalf("incompatible registration: %v", err)
	}
	check, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "temps-value", -1, v3)
	if err != nil || check.Is || len(check.Messages) == 0 {
		t.Fatalf("check %+v %v", check, err)
	}
	check, err = cl.CheckCompatibility(ctx, "temps-value", -2, v2)
	if err != nil || !check.Is {
		t.Fatalf("check against all %+v %v", check, err)
	}
	if res := cl.ResetCompatibility(ctx, "temps-value"); res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Fatalf("reset compatibility %+v", res[0])
	}

	// Mode.
	if res := cl.SetMode(ctx, sr.ModeReadOnly, "temps-value"); res[0].Err != nil || res[0].Mode != sr.ModeReadOnly {
		t.Fatalf("set mode %+v", res[0])
	}
	_, err = cl.CreateSchema(ctx, "temps-value", sr.Schema{Type: sr.TypeJSON, Schema: `{"type":"object"}`})
	if !errors.As(err, &re) || re.ErrorCode != 42205 {
		t.Fatalf("register in READONLY: %v", err)
	}
	if res := cl.ResetMode(ctx, "temps-value"); res[0].Err != nil {
		t.Fatalf("reset mode %+v", res[0])
	}

	// Avro, with a reference to another subject's record.
	loc, err := cl.CreateSchema(ctx, "loc-value", sr.Schema{Schema: `{"type":"record","name":"Loc","namespace":"o","fields":[{"name":"lat","type":"double"}]}`})
	if err != nil || loc.Type != sr.TypeAvro {
		t.Fatalf("avro %+v %v", loc, err)
	}
	reading, err := cl.CreateSchema(ctx, "reading-value", sr.Schema{
		Schema:     `{"type":"record","name":"Reading","namespace":"o","fields":[{"name":"at","type":"o.Loc"}]}`,
		References: []sr.SchemaReference{{Name: "o.Loc", Subject: "loc-value", Version: 1}},
	})
	if err != nil || len(reading.References) != 1 {
		t.Fatalf("avro with reference %+v %v", reading, err)
	}
	refs, err := cl.SchemaReferences(ctx, "loc-value", 1)
	if err != nil || len(refs) != 1 || refs[0].Subject != "reading-value" {
		t.Fatalf("referenced by %+v %v", refs, err)
	}
	if _, err := cl.DeleteSubject(ctx, "loc-value", sr.SoftDelete); !errors.As(err, &re) || re.ErrorCode != 42206 {
		t.Fatalf("deleting a referenced subject: %v", err)
	}

	// Soft delete, then permanent.
	deleted, err := cl.DeleteSubject(ctx, "temps-value", sr.SoftDelete)
	if err != nil || !slices.Equal(deleted, []int{1, 2}) {
		t.Fatalf("soft delete %v %v", deleted, err)
	}
	if _, err := cl.SubjectVersions(ctx, "temps-value"); !errors.As(err, &re) || re.ErrorCode != 40401 {
		t.Fatalf("versions of a deleted subject: %v", err)
	}
	usages, err := cl.SchemaUsagesByID(sr.WithParams(ctx, sr.ShowDeleted), s1.ID)
	if err != nil || len(usages) != 1 || usages[0].Version != 1 {
		t.Fatalf("usages with deleted %+v %v", usages, err)
	}
	if err := cl.DeleteSchema(ctx, "reading-value", 1, sr.HardDelete); !errors.As(err, &re) || re.ErrorCode != 40407 {
		t.Fatalf("hard delete without soft delete: %v", err)
	}
	deleted, err = cl.DeleteSubject(ctx, "temps-value", sr.HardDelete)
	if err != nil || !slices.Equal(deleted, []int{1, 2}) {
		t.Fatalf("hard delete %v %v", deleted, err)
	}
	all, err := cl.Subjects(sr.WithParams(ctx, sr.ShowDeleted))
	if err != nil || !slices.Equal(all, []string{"loc-value", "reading-value"}) {
		t.Fatalf("subjects after delete %v %v", all, err)
	}
}
