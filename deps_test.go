package outpost_test

// The import policy of the module, as code (in the style of Go's own
// src/go/build/deps_test.go). ARCHITECTURE.md states it in words: each
// top-level folder is one step of the data flow; dependencies point toward
// the log (edge/log) and the published contract (core/wire); only the two
// composition roots (edge/node, core/service) wire across steps, and nothing
// imports them; the edge binary links nothing of core but core/wire.
//
// A new package must be placed in the table below before it builds into a
// test run: an unlisted package fails TestImportPolicy, so its place in the
// flow is a decision someone wrote down.

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/outpost-edge/outpost/"

// policy lists, for each package of the module (a trailing "/..." covers a
// folder and everything under it), the packages of the module its
// production code may import directly. Test files are not held to it: tests
// may start whatever they exercise (edge/e2e starts the whole node).
var policy = map[string][]string{
	// The bottom: the log and the contract import nothing of ours.
	"edge/log":  {},
	"core/wire": {},

	// Leaves with one job each.
	"bridge":                 {},
	"bridge/auth":            {},
	"bridge/route":           {},
	"sync/peer":              {"edge/log", "core/wire", "internal/backoff"},
	"internal/backoff":       {},
	"internal/ratelimit":     {},
	"internal/schemacompile": {"core/wire"},
	"internal/buildinfo":     {},
	"internal/probe":         {},
	"internal/polltest":      {},
	"internal/buftest":       {},
	"internal/httpauth":      {},
	"internal/netaddr":       {},
	"internal/sse":           {},
	"internal/uikit":         {},
	"internal/mochifix":      {},

	// The edge side: data enters (bridge), lands (edge), leaves (sync).
	"edge/log/logtest":   {"edge/log"},
	"edge/meta":          {"edge/log"},
	"edge/api":           {"edge/log", "edge/meta", "internal/httpauth"},
	"edge/ui":            {"internal/sse", "internal/uikit"},
	"bridge/mqtt":        {"edge/log", "core/wire", "bridge/route", "internal/mochifix"},
	"sync/upstream":      {"edge/log", "core/wire", "internal/netaddr", "internal/backoff"},
	"sync/schema":        {"core/wire", "sync/upstream"},
	"bridge/schemacheck": {"core/wire", "edge/log", "bridge/route", "internal/schemacompile"},
	"sync/downlink":      {"edge/log", "core/wire", "sync/upstream"},
	"bridge/deliver":     {"core/wire"},
	"edge/e2e":           {},

	// The central side: nothing of the edge side.
	"core/provision": {"core/wire"},
	"core/sites":     {"core/wire"},
	"core/ui":        {"core/sites", "core/command", "internal/sse", "internal/uikit"},
	"core/tail":      {"core/wire"},
	"core/schema":    {"core/wire", "internal/schemacompile"},
	"core/natstest":  {"core/wire", "internal/polltest"},
	"core/command":   {"core/wire"},
	// Consumer groups: importable by applications, so only the contract.
	"core/groups": {"core/wire"},

	// Composition roots wire across steps; nothing imports them but their
	// binary.
	"edge/node": {
		"edge/log", "edge/meta", "edge/api", "core/wire",
		"bridge/auth", "bridge/mqtt", "bridge/route", "bridge/schemacheck", "sync/upstream", "sync/schema",
		"internal/httpauth", "internal/netaddr", "internal/ratelimit",
		"sync/peer",
		"sync/downlink", "bridge/deliver",
		"edge/ui", "internal/buildinfo",
	},
	"core/service": {
		"core/wire", "core/provision", "core/sites", "core/schema",
		"internal/httpauth", "internal/netaddr", "core/command", "core/ui", "core/groups",
	},

	// The binaries: flags, config, run.
	"edge": {"edge/node", "internal/buildinfo", "internal/probe"},
	"core": {"core/service", "core/tail", "core/groups", "internal/buildinfo", "internal/probe", "core/wire"},

	// Where data comes from: a device fleet imports nothing of the broker
	// it tests.
	"firmware-sim/...": {"firmware-sim/...", "internal/buildinfo", "internal/polltest", "internal/buftest", "internal/mochifix"},
}

// binaries lists the shipped binaries, the packages of the module each may
// link (transitively), and outside modules that must stay out of it: heavy
// clients the tests use to prove interoperability are not shipped.
var binaries = []struct {
	pkg       string
	mayLink   []string // module packages allowed in the binary (prefixes)
	forbidden []string // import path prefixes that must not be linked
}{
	{
		pkg:     "edge",
		mayLink: []string{"edge", "bridge", "sync", "core/wire", "internal/buildinfo", "internal/probe", "internal/httpauth", "internal/netaddr", "internal/backoff", "internal/ratelimit", "internal/schemacompile", "internal/sse", "internal/uikit", "internal/mochifix"},
	},
	{
		pkg:     "core",
		mayLink: []string{"core", "internal/buildinfo", "internal/probe", "internal/httpauth", "internal/netaddr", "internal/schemacompile", "internal/sse", "internal/uikit"},
	},
	{
		pkg:     "firmware-sim",
		mayLink: []string{"firmware-sim", "internal/buildinfo"},
	},
}

// testOnlyClients are client libraries only tests may use.
var testOnlyClients = []string{
	"github.com/eclipse/paho.golang",
	"github.com/eclipse/paho.mqtt.golang",
	"github.com/twmb/franz-go",
	"github.com/chromedp/",
}

type listedPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func goList(t *testing.T, args ...string) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// local returns the module-relative path of an import path, and whether it
// belongs to the module ("" for the module root).
func local(path string) (string, bool) {
	if path == strings.TrimSuffix(module, "/") {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, module)
	return rel, ok
}

// allowedFor finds pkg's entry in policy: an exact key, else the longest
// "/..." key covering it.
func allowedFor(pkg string) ([]string, bool) {
	if a, ok := policy[pkg]; ok {
		return a, true
	}
	best, found := "", false
	var allowed []string
	for k, a := range policy {
		dir, ok := strings.CutSuffix(k, "/...")
		if ok && (pkg == dir || strings.HasPrefix(pkg, dir+"/")) && len(dir) > len(best) {
			best, allowed, found = dir, a, true
		}
	}
	return allowed, found
}

// matches reports whether pkg is named by one of the patterns (exact, or
// "dir/..." for a folder and everything under it).
func matches(pkg string, patterns []string) bool {
	for _, p := range patterns {
		if dir, ok := strings.CutSuffix(p, "/..."); ok {
			if pkg == dir || strings.HasPrefix(pkg, dir+"/") {
				return true
			}
		} else if pkg == p {
			return true
		}
	}
	return false
}

func TestImportPolicy(t *testing.T) {
	for _, p := range goList(t, "./...") {
		pkg, _ := local(p.ImportPath)
		if pkg == "" {
			continue // this test's own package
		}
		allowed, ok := allowedFor(pkg)
		if !ok {
			t.Errorf("%s is not in deps_test.go's policy: add it with the packages it may import", pkg)
			continue
		}
		for _, imp := range p.Imports {
			dep, mine := local(imp)
			if !mine {
				continue
			}
			if !matches(dep, allowed) {
				t.Errorf("%s imports %s, which the policy does not allow (deps_test.go): %s may import %v", pkg, dep, pkg, allowed)
			}
		}
	}
}

// TestCompositionRootsImportedByTheirBinaryOnly keeps edge/node and
// core/service at the top: a package importing one would wire steps
// together behind the roots' backs.
func TestCompositionRootsImportedByTheirBinaryOnly(t *testing.T) {
	roots := map[string]string{"edge/node": "edge", "core/service": "core"}
	for _, p := range goList(t, "./...") {
		pkg, _ := local(p.ImportPath)
		for _, imp := range p.Imports {
			dep, _ := local(imp)
			if bin, isRoot := roots[dep]; isRoot && pkg != bin {
				t.Errorf("%s imports the composition root %s; only the %s binary may", pkg, dep, bin)
			}
		}
	}
}

func TestBinariesLinkOnlyTheirSide(t *testing.T) {
	for _, b := range binaries {
		pkgs := goList(t, module+b.pkg)
		if len(pkgs) != 1 {
			t.Fatalf("go list %s: %d packages", b.pkg, len(pkgs))
		}
		for _, dep := range pkgs[0].Deps {
			if rel, mine := local(dep); mine {
				ok := slices.ContainsFunc(b.mayLink, func(prefix string) bool {
					return rel == prefix || strings.HasPrefix(rel, prefix+"/")
				})
				if !ok {
					t.Errorf("the %s binary links %s; it may link only %v (deps_test.go)", b.pkg, rel, b.mayLink)
				}
				continue
			}
			for _, f := range testOnlyClients {
				if strings.HasPrefix(dep, f) {
					t.Errorf("the %s binary links %s, a client library only tests may use", b.pkg, dep)
				}
			}
		}
	}
}

// TestLogImportsNoBrokerOrTransport: the log is storage only; it must not
// pull in the MQTT broker or NATS (ARCHITECTURE.md, STYLE.md §1).
func TestLogImportsNoBrokerOrTransport(t *testing.T) {
	pkgs := goList(t, module+"edge/log")
	for _, dep := range pkgs[0].Deps {
		if strings.HasPrefix(dep, "github.com/mochi-mqtt/") || strings.HasPrefix(dep, "github.com/nats-io/") {
			t.Errorf("edge/log links %s", dep)
		}
	}
}
