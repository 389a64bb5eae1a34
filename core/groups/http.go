package groups

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// requestTimeout bounds the JetStream calls of one HTTP request or scrape.
const requestTimeout = 10 * time.Second

// API serves GET /v1/groups (every group, described) and
// GET /v1/groups/{name} (one) as JSON.
type API struct {
	js     jetstream.JetStream
	prefix string
}

// NewAPI returns the groups API over js (prefix: the subject prefix).
func NewAPI(js jetstream.JetStream, prefix string) *API { return &API{js: js, prefix: prefix} }

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/groups", a.list)
	mux.HandleFunc("GET /v1/groups/{name}", a.one)
}

// GroupsResponse is the body of GET /v1/groups.
type GroupsResponse struct {
	Groups []GroupInfo `json:"groups"`
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	names, err := List(ctx, a.js)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	out := GroupsResponse{Groups: make([]GroupInfo, 0, len(names))}
	for _, n := range names {
		gi, err := Describe(ctx, a.js, a.prefix, n)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		out.Groups = append(out.Groups, gi)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) one(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := ValidateName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	gi, err := Describe(ctx, a.js, a.prefix, name)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err)
	default:
		writeJSON(w, http.StatusOK, gi)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Collector exports every group's lag and membership at scrape time.
type Collector struct {
	api     *API
	lag     *prometheus.Desc
	total   *prometheus.Desc
	members *prometheus.Desc
}

// NewCollector returns the groups' metrics collector.
func NewCollector(js jetstream.JetStream, prefix string) *Collector {
	return &Collector{
		api: NewAPI(js, prefix),
		lag: prometheus.NewDesc("outpost_group_lag_records", "Messages of a bucket after the group's committed position (records not yet committed; a batch message counts once).",
			[]string{"group", "topic", "bucket"}, nil),
		total: prometheus.NewDesc("outpost_group_lag_records_total", "A group's lag summed over its buckets.",
			[]string{"group", "topic"}, nil),
		members: prometheus.NewDesc("outpost_group_members", "Live members of a group (heartbeating within the session timeout).",
			[]string{"group"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.total
	ch <- c.members
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	names, err := List(ctx, c.api.js)
	if err != nil {
		return
	}
	for _, n := range names {
		gi, err := Describe(ctx, c.api.js, c.api.prefix, n)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(len(gi.Members)), n)
		if gi.Topic == "" {
			continue
		}
		for _, b := range gi.Buckets {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(b.LagRecords), n, gi.Topic, strconv.Itoa(b.Bucket))
		}
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(gi.LagRecords), n, gi.Topic)
	}
}
