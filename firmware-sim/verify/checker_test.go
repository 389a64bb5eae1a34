package verify_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/firmware-sim/payload"
	"github.com/outpost-edge/outpost/firmware-sim/verify"
)

func reading(dev string, seq int64) []byte {
	r := payload.Reading{Device: dev, Seq: seq, TS: 1700000000000 + seq, Temperature: 20, Humidity: 50, Vibration: 0.01, Battery: 90}
	return payload.Append(nil, payload.JSON, &r, 0)
}

func TestCheckerClean(t *testing.T) {
	c := verify.New(verify.Options{})
	for seq := range int64(1000) {
		for _, d := range []string{"a", "b"} {
			if err := c.Add("", reading(d, seq)); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.Expect("a", 1000)
	rep := c.Report()
	if !rep.OK || rep.Devices != 2 || rep.Received != 2000 || rep.Distinct != 2000 {
		t.Fatalf("report %+v", rep)
	}
}

func TestCheckerCatchesGapAndDuplicate(t *testing.T) {
	c := verify.New(verify.Options{})
	for seq := range int64(100) {
		if seq == 42 { // injected gap
			continue
		}
		_ = c.Add("dev-1", reading("dev-1", seq))
		if seq == 77 { // injected duplicate
			_ = c.Add("dev-1", reading("dev-1", seq))
		}
	}
	rep := c.Report()
	if rep.OK {
		t.Fatal("report OK despite gap and duplicate")
	}
	if rep.Missing != 1 || rep.Duplicates != 1 || len(rep.Problems) != 1 {
		t.Fatalf("report %+v", rep)
	}
	p := rep.Problems[0]
	if len(p.Gaps) != 1 || p.Gaps[0] != (verify.Range{From: 42, To: 42}) || len(p.DupSamples) != 1 || p.DupSamples[0] != 77 {
		t.Fatalf("device report %+v", p)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil || !strings.Contains(buf.String(), "FAILED") {
		t.Fatalf("text report %q (%v)", buf.String(), err)
	}
}

func TestCheckerTailAndHeadGaps(t *testing.T) {
	c := verify.New(verify.Options{})
	for seq := int64(5); seq < 10; seq++ {
		c.Observe("d", seq)
	}
	c.Expect("d", 12)
	got := c.Device("d")
	want := []verify.Range{{0, 4}, {10, 11}}
	if fmt.Sprint(got.Gaps) != fmt.Sprint(want) || got.Missing != 7 {
		t.Fatalf("gaps %v missing %d, want %v", got.Gaps, got.Missing, want)
	}
	c2 := verify.New(verify.Options{FromFirstSeen: true})
	for seq := int64(5); seq < 10; seq++ {
		c2.Observe("d", seq)
	}
	if r := c2.Report(); !r.OK {
		t.Fatalf("FromFirstSeen: %+v", r)
	}
}

// TestCheckerRandomized shuffles a sequence with random losses and
// duplicates and compares the checker's totals with the truth.
func TestCheckerRandomized(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	const n = 20000
	var seqs []int64
	lost, dups := 0, 0
	for i := range int64(n) {
		switch x := rng.IntN(100); {
		case x < 3:
			lost++
		case x < 6:
			dups++
			seqs = append(seqs, i, i)
		default:
			seqs = append(seqs, i)
		}
	}
	// Local reordering, as a resend after reconnect produces.
	for i := range seqs {
		j := min(len(seqs)-1, i+rng.IntN(5))
		seqs[i], seqs[j] = seqs[j], seqs[i]
	}
	c := verify.New(verify.Options{})
	for _, s := range seqs {
		c.Observe("d", s)
	}
	c.Expect("d", n)
	rep := c.Report()
	if rep.Missing != int64(lost) || rep.Duplicates != int64(dups) || rep.Distinct != int64(n-lost) {
		t.Fatalf("missing %d dups %d distinct %d; want %d %d %d", rep.Missing, rep.Duplicates, rep.Distinct, lost, dups, n-lost)
	}
}

func TestCheckerInvalid(t *testing.T) {
	c := verify.New(verify.Options{})
	r := payload.Reading{Device: "d", Seq: 0}
	if err := c.Add("", payload.AppendMalformed(nil, payload.JSON, &r, 0)); err == nil {
		t.Fatal("malformed accepted")
	}
	_ = c.Add("", payload.AppendSchemaViolation(nil, payload.JSON, &r, 0))
	rep := c.Report()
	if rep.Invalid != 2 || rep.InvalidByKind["malformed"] != 1 || rep.InvalidByKind["schema violation"] != 1 || !rep.OK {
		t.Fatalf("report %+v", rep)
	}
}

func TestFileSource(t *testing.T) {
	var in strings.Builder
	for seq := range int64(10) {
		switch seq % 3 {
		case 0: // a bare reading
			in.Write(reading("f", seq))
		case 1: // the HTTP record shape
			fmt.Fprintf(&in, `{"offset":%d,"value":%q}`, seq, base64.StdEncoding.EncodeToString(reading("f", seq)))
		case 2: // inline payload object
			fmt.Fprintf(&in, `{"device":"f","payload":%s}`, reading("f", seq))
		}
		in.WriteString("\n\n")
	}
	in.Write(reading("f", 3)) // a duplicate
	c := verify.New(verify.Options{})
	if err := verify.Run(context.Background(), verify.FileSource{R: strings.NewReader(in.String()), Name: "test"}, c); err != nil {
		t.Fatal(err)
	}
	rep := c.Report()
	if rep.Distinct != 10 || rep.Duplicates != 1 || rep.Missing != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// edgeAPI serves the edge's record listing for one topic from memory.
func edgeAPI(t *testing.T, parts map[int32][][]byte) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{p}/records", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("topic") != "telemetry" {
			http.Error(w, "no such topic", http.StatusNotFound)
			return
		}
		p, _ := strconv.Atoi(r.PathValue("p"))
		off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		recs := parts[int32(p)]
		type rec struct {
			Offset    int64  `json:"offset"`
			Value     string `json:"value"`
			Timestamp int64  `json:"timestamp"`
		}
		out := struct {
			Records    []rec `json:"records"`
			NextOffset int64 `json:"next_offset"`
		}{Records: []rec{}, NextOffset: off}
		for i := off; i < int64(len(recs)) && len(out.Records) < limit; i++ {
			out.Records = append(out.Records, rec{Offset: i, Value: base64.StdEncoding.EncodeToString(recs[i]), Timestamp: 1})
			out.NextOffset = i + 1
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestHTTPSource(t *testing.T) {
	parts := map[int32][][]byte{}
	for seq := range int64(2500) {
		dev := fmt.Sprintf("d%d", seq%4)
		p := int32(seq % 4 % 2)
		parts[p] = append(parts[p], reading(dev, seq/4))
	}
	srv := edgeAPI(t, parts)
	src := verify.HTTPSource{BaseURL: srv.URL, Topic: "telemetry", Partitions: []int32{0, 1}, Limit: 300}

	c := verify.New(verify.Options{})
	if err := verify.Run(context.Background(), src, c); err != nil {
		t.Fatal(err)
	}
	rep := c.Report()
	if !rep.OK || rep.Distinct != 2500 || len(rep.Partitions) != 2 || rep.Partitions[0].Next != 1250 {
		t.Fatalf("report %+v", rep)
	}

	// Lose one record in the log and duplicate another: both must show up.
	parts[1] = append(parts[1][:10:10], parts[1][11:]...)
	parts[0] = append(parts[0][:20:20], parts[0][19:]...)
	c = verify.New(verify.Options{})
	if err := verify.Run(context.Background(), src, c); err != nil {
		t.Fatal(err)
	}
	if rep := c.Report(); rep.OK || rep.Missing != 1 || rep.Duplicates != 1 {
		t.Fatalf("after injecting: %+v", rep)
	}

	src.Topic = "nope"
	if err := verify.Run(context.Background(), src, verify.New(verify.Options{})); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing topic: err = %v", err)
	}
}

// TestOffsetGap feeds records whose log offsets skip one: the device
// sequence is complete, but the partition check must fail (G2).
func TestOffsetGap(t *testing.T) {
	var in strings.Builder
	for i, off := range []int64{0, 1, 3, 4} {
		fmt.Fprintf(&in, `{"topic":"telemetry","partition":2,"offset":%d,"value":%q}`+"\n", off, base64.StdEncoding.EncodeToString(reading("p", int64(i))))
	}
	c := verify.New(verify.Options{})
	if err := verify.Run(context.Background(), verify.FileSource{R: strings.NewReader(in.String())}, c); err != nil {
		t.Fatal(err)
	}
	rep := c.Report()
	if rep.OK || rep.Missing != 0 || len(rep.Partitions) != 1 {
		t.Fatalf("report %+v", rep)
	}
	p := rep.Partitions[0]
	if p.Partition != 2 || p.Stream != "telemetry" || p.Missing != 1 || p.Gaps[0] != (verify.Range{From: 2, To: 2}) {
		t.Fatalf("partition report %+v", p)
	}
}
