package meta_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/edge/meta"
	bolt "go.etcd.io/bbolt"
)

// makeStore writes a store with some of everything and returns its path.
func makeStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := meta.Open(path, meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := s.Put(ctx, "schemas", "telemetry-"+strings.Repeat("x", i), []byte(`{"type":"object"}`)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetCursor(ctx, "upstream", "telemetry", int32(i), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Identity(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCorruptFile(t *testing.T) {
	pageSize := os.Getpagesize()
	cases := []struct {
		name    string
		corrupt func(t *testing.T, path string)
		want    error
	}{
		{"garbage", func(t *testing.T, path string) {
			b := make([]byte, 4*pageSize)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			writeFile(t, path, b)
		}, meta.ErrCorrupt},
		{"too_small", func(t *testing.T, path string) {
			writeFile(t, path, []byte("not a database"))
		}, meta.ErrCorrupt},
		{"zeroed_meta_pages", func(t *testing.T, path string) {
			b := readFile(t, path)
			clear(b[:2*pageSize])
			writeFile(t, path, b)
		}, meta.ErrCorrupt},
		{"truncated", func(t *testing.T, path string) {
			b := readFile(t, path)
			writeFile(t, path, b[:len(b)/2])
		}, meta.ErrCorrupt},
		{"trashed_data_pages", func(t *testing.T, path string) {
			// Overwrite the header of every page that holds a kv key
			// (live and freed copies): flags and element count become nonsense.
			b := readFile(t, path)
			hits := 0
			for off := 2 * pageSize; off < len(b); off += pageSize {
				if bytes.Contains(b[off:off+pageSize], []byte("telemetry-")) {
					for i := 8; i < 16; i++ {
						b[off+i] = 0xFF
					}
					hits++
				}
			}
			if hits == 0 {
				t.Fatal("no page holds a kv key")
			}
			writeFile(t, path, b)
		}, meta.ErrCorrupt},
		{"newer_layout", func(t *testing.T, path string) {
			boltPut(t, path, "outpost", "format", []byte{9})
		}, meta.ErrFormat},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := makeStore(t)
			c.corrupt(t, path)
			s, err := meta.Open(path, meta.Config{})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a damaged file")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

// TestUnknownValueVersion: a value written by a newer release is refused,
// not misread.
func TestUnknownValueVersion(t *testing.T) {
	path := makeStore(t)
	boltPut(t, path, "outpost", "identity", append([]byte{9}, `{"node_id":"abcdefghijklmnop"}`...))
	s := openStore(t, path, meta.Config{})
	if id, err := s.Identity(ctx); !errors.Is(err, meta.ErrFormat) {
		t.Fatalf("Identity = %+v, %v; want ErrFormat", id, err)
	}
	// Other reads still work.
	if off, ok, err := s.Cursor(ctx, "upstream", "telemetry", 3); err != nil || !ok || off != 3 {
		t.Fatalf("cursor = %d %v %v", off, ok, err)
	}
}

func boltPut(t *testing.T, path, bucket, key string, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Put([]byte(key), value)
	}); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
