package ui

import (
	"embed"
	"io/fs"
	"maps"
	"net/http"

	"github.com/outpost-edge/outpost/internal/uikit"
)

//go:embed assets
var assets embed.FS

// OpenPaths returns the paths that carry no data (the page and its static
// files): the API serves them without a token, so that the page can ask
// for one.
func OpenPaths() []string { return append([]string{"/", "/ui/app.js"}, uikit.Paths()...) }

// Routes returns the dashboard's handlers by mux pattern, for the node's
// HTTP API to serve beside its own.
func (d *Dashboard) Routes() map[string]http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	routes := map[string]http.Handler{
		"GET /{$}": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, "index.html")
		}),
		"GET /ui/app.js": http.StripPrefix("/ui", files),
		"GET /ui/snapshot": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(d.Snapshot())
		}),
		"GET /ui/events": d.hub,
	}
	maps.Copy(routes, uikit.Routes())
	return routes
}
