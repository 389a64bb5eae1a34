package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"time"
)

//go:embed assets
var assets embed.FS

// OpenPaths are the paths that carry no data (the page and its static
// files): the API serves them without a token, so that the page can ask
// for one.
var OpenPaths = []string{"/", "/ui/app.js", "/ui/app.css"}

// Routes returns the dashboard's handlers by mux pattern, for the node's
// HTTP API to serve beside its own.
func (d *Dashboard) Routes() map[string]http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	return map[string]http.Handler{
		"GET /{$}": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, static, "index.html")
		}),
		"GET /ui/app.js":  http.StripPrefix("/ui", files),
		"GET /ui/app.css": http.StripPrefix("/ui", files),
		"GET /ui/snapshot": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(d.Snapshot())
		}),
		"GET /ui/events": http.HandlerFunc(d.serveEvents),
	}
}

// serveEvents streams one snapshot per sample as server-sent events until
// the viewer goes away. A write that stalls (a viewer that stopped
// reading) ends the stream after 10 s instead of holding a goroutine.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ch, stop := d.watch()
	defer stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := w.Write([]byte("event: snapshot\ndata: ")); err != nil {
				return
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			if _, err := w.Write([]byte("\n\n")); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
