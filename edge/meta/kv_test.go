package meta_test

import (
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/edge/meta"
)

// Apply writes its puts and deletes together and they survive a reopen.
func TestApply(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s := openStore(t, path, meta.Config{})
	if err := s.Put(ctx, "schemas", "old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	puts := map[string][]byte{"subjects.a": []byte(`{"v":1}`), "ids.1": []byte(`{"v":1,"id":1}`), "empty": nil}
	if err := s.Apply(ctx, "schemas", puts, []string{"old", "never-there"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, "schemas", map[string][]byte{"": []byte("x")}, nil); err == nil {
		t.Fatal("Apply took an empty key")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path, meta.Config{})
	all, err := s.All(ctx, "schemas")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || string(all["subjects.a"]) != `{"v":1}` || string(all["ids.1"]) != `{"v":1,"id":1}` || all["empty"] == nil {
		t.Fatalf("after reopen: %q", all)
	}
}
