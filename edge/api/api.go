package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/outpost-edge/outpost/internal/httpauth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handler serves the API. It is safe for concurrent use.
type handler struct {
	cfg     Config
	mux     *http.ServeMux
	auth    *httpauth.Bearer
	waiters atomic.Int64 // long-polls waiting now
	metrics *metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	waiting  prometheus.GaugeFunc
}

// New returns the API as an http.Handler. It starts no goroutines.
func New(cfg Config) (http.Handler, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &handler{cfg: cfg, mux: http.NewServeMux()}
	// Exactly /healthz is open: anything else, including paths the mux
	// would redirect or reject, asks for the token first (fail closed).
	h.auth = httpauth.New(cfg.Token, "outpost", "the node's http.token", append([]string{"/healthz"}, cfg.OpenPaths...)...)
	if cfg.Registerer != nil {
		m := &metrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "outpost_api_requests_total",
				Help: "HTTP API requests by route and status code.",
			}, []string{"route", "code"}),
			waiting: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "outpost_api_long_polls_waiting",
				Help: "Records requests waiting for new records now.",
			}, func() float64 { return float64(h.waiters.Load()) }),
		}
		for _, c := range []prometheus.Collector{m.requests, m.waiting} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, errors.Join(errors.New("api: register metrics"), err)
			}
		}
		h.metrics = m
	}
	h.route("GET /healthz", h.healthz)
	h.route("GET /readyz", h.readyz)
	if cfg.Gatherer != nil {
		h.route("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slogPrinter{cfg},
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP)
	}
	h.route("GET /v1/topics", h.topics)
	h.route("GET /v1/topics/{topic}", h.topic)
	h.route("GET /v1/topics/{topic}/partitions/{partition}", h.partition)
	h.route("GET /v1/topics/{topic}/partitions/{partition}/records", h.records)
	for pattern, rh := range cfg.Routes {
		h.route(pattern, rh.ServeHTTP)
	}
	return h, nil
}

// route registers fn under pattern, counting requests by pattern and code.
func (h *handler) route(pattern string, fn http.HandlerFunc) {
	if h.metrics == nil {
		h.mux.HandleFunc(pattern, fn)
		return
	}
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		fn(sw, r)
		h.count(pattern, sw.code)
	})
}

// count counts a request under a route label: a mux pattern, or
// "unauthorized" and "unknown" for requests refused before routing.
func (h *handler) count(route string, code int) {
	if h.metrics != nil {
		h.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.auth.Allow(r) {
		h.auth.Refuse(w, r)
		h.count("unauthorized", http.StatusUnauthorized)
		return
	}
	// The mux answers unknown paths and wrong methods in plain text; ours
	// are JSON with a hint.
	if _, pattern := h.mux.Handler(r); pattern == "" {
		probe := r.Clone(r.Context())
		probe.Method = http.MethodGet
		if _, p := h.mux.Handler(probe); p != "" && r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here; this API is read-only: use GET")
			h.count("unknown", http.StatusMethodNotAllowed)
			return
		}
		writeError(w, http.StatusNotFound, "no such route: "+r.URL.Path+"; see GET / (the dashboard), /v1/topics, /healthz, /readyz, /metrics")
		h.count("unknown", http.StatusNotFound)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if h.cfg.Ready != nil {
		if err := h.cfg.Ready(); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	if err := h.cfg.Log.Health(); err != nil {
		reasons = append(reasons, err.Error())
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error":   "not ready: " + strings.Join(reasons, "; "),
			"reasons": reasons,
		})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// errorBody is every error answer; the offsets are set on 416 only.
type errorBody struct {
	Error       string `json:"error"`
	StartOffset *int64 `json:"start_offset,omitempty"`
	EndOffset   *int64 `json:"end_offset,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // the client may be gone; nothing to do about it
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// slogPrinter adapts the logger to promhttp's ErrorLog.
type slogPrinter struct{ cfg Config }

func (p slogPrinter) Println(v ...any) {
	p.cfg.Logger.Warn("api: serving metrics", "err", fmt.Sprint(v...))
}
