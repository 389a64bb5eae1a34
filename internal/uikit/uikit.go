package uikit

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed assets
var assets embed.FS

// Paths are the kit's files, served without a token (they carry no data).
func Paths() []string { return []string{"/ui/kit.css", "/ui/kit.js"} }

// Routes returns the handlers of the kit's files by mux pattern.
func Routes() map[string]http.Handler {
	static, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/ui", http.FileServerFS(static))
	out := map[string]http.Handler{}
	for _, p := range Paths() {
		out["GET "+p] = files
	}
	return out
}
