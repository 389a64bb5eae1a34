package ui

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"time"

	"github.com/outpost-edge/outpost/core/command"
	"github.com/outpost-edge/outpost/core/sites"
	"github.com/outpost-edge/outpost/internal/sse"
	"github.com/outpost-edge/outpost/internal/uikit"
)

//go:embed assets
var assets embed.FS

// OpenPaths returns the paths that carry no data; core serves them without
// its token.
func OpenPaths() []string { return append([]string{"/", "/ui/app.js"}, uikit.Paths()...) }

// Config is what the dashboard reads.
type Config struct {
	// Sites returns the sites view (the same as GET /v1/sites).
	Sites func() []sites.Site
	// Subjects returns the schema registry's subjects; nil shows none.
	Subjects func() []string
	// Commands returns the recent commands; nil shows none.
	Commands func() []command.Recent
	// Ready returns nil when core is ready, else why not.
	Ready    func() error
	Interval time.Duration // 0: one second
	Logger   *slog.Logger
	Now      func() time.Time
}

// Snapshot is one sample as the page reads it.
type Snapshot struct {
	Time       time.Time    `json:"time"`
	Ready      bool         `json:"ready"`
	NotReady   string       `json:"not_ready,omitempty"`
	Sites      []sites.Site `json:"sites"`
	Nodes      int          `json:"nodes"`
	Stale      int          `json:"stale"`
	LagRecords int64        `json:"lag_records"`
	// LagSeconds is the age of the oldest record any node has not
	// forwarded yet.
	LagSeconds float64          `json:"lag_seconds"`
	Subjects   []string         `json:"subjects"`
	Commands   []command.Recent `json:"commands"`
}

// Dashboard samples and serves.
type Dashboard struct {
	cfg Config
	hub *sse.Hub
}

// New returns a Dashboard with a first sample taken.
func New(cfg Config) *Dashboard {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Dashboard{cfg: cfg, hub: sse.NewHub()}
	d.sample()
	return d
}

// Run samples every Interval until ctx ends.
func (d *Dashboard) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.sample()
		}
	}
}

func (d *Dashboard) sample() {
	s := Snapshot{Time: d.cfg.Now().UTC(), Ready: true, Sites: []sites.Site{}, Subjects: []string{}, Commands: []command.Recent{}}
	if d.cfg.Commands != nil {
		if c := d.cfg.Commands(); c != nil {
			s.Commands = c
		}
	}
	if d.cfg.Ready != nil {
		if err := d.cfg.Ready(); err != nil {
			s.Ready, s.NotReady = false, err.Error()
		}
	}
	if d.cfg.Sites != nil {
		s.Sites = d.cfg.Sites()
	}
	for _, site := range s.Sites {
		for _, n := range site.Nodes {
			s.Nodes++
			if n.Stale {
				s.Stale++
			}
			s.LagRecords += n.LagRecords
			for _, p := range n.Partitions {
				s.LagSeconds = max(s.LagSeconds, float64(p.OldestUnforwardedAgeMs)/1000)
			}
		}
	}
	if d.cfg.Subjects != nil {
		s.Subjects = d.cfg.Subjects()
	}
	b, err := json.Marshal(s)
	if err != nil {
		d.cfg.Logger.Error("ui: encode snapshot", "err", err)
		return
	}
	d.hub.Publish(b)
}

// Routes returns the dashboard's handlers by mux pattern.
func (d *Dashboard) Routes() map[string]http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/ui", http.FileServerFS(static))
	routes := map[string]http.Handler{
		"GET /{$}": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, "index.html")
		}),
		"GET /ui/app.js": files,
		"GET /ui/snapshot": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(d.hub.Last())
		}),
		"GET /ui/events": d.hub,
	}
	maps.Copy(routes, uikit.Routes())
	return routes
}
