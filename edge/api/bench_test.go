package api_test

import (
	"io"
	"net/http"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// BenchmarkRecords reads pages of 1000 records of about 100 bytes over
// loopback HTTP, as JSON and as msgpack, from one 64 MiB segment.
func BenchmarkRecords(b *testing.B) {
	for _, format := range []string{"json", "msgpack"} {
		b.Run(format, func(b *testing.B) {
			// Default segment size; appends of 10 records, like group commits
			// under load.
			e := newEnv(b, nil, func(c *elog.Config) { c.SegmentMaxBytes = 0 })
			p, _ := e.log.Partition("t", 0)
			recs := make([]elog.Record, 1000)
			for i := range recs {
				recs[i] = textRec(i)
			}
			for i := 0; i < len(recs); i += 10 {
				if _, err := p.Append(bg, recs[i:i+10]); err != nil {
					b.Fatal(err)
				}
			}
			url := e.url + "/v1/topics/t/partitions/0/records?offset=0&limit=1000"
			var total int64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if format == "msgpack" {
					req.Header.Set("Accept", "application/msgpack")
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Fatal(res.Status)
				}
				total += n
			}
			b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(total)/float64(b.N), "B/page")
		})
	}
}
