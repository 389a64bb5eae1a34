package api_test

import (
	"io"
	"net/http"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// BenchmarkRecords reads pages of 1000 records of about 100 bytes over
// loopback HTTP, as JSON and as msgpack.
func BenchmarkRecords(b *testing.B) {
	for _, format := range []string{"json", "msgpack"} {
		b.Run(format, func(b *testing.B) {
			e := newEnv(b, nil, nil)
			p, _ := e.log.Partition("t", 0)
			recs := make([]elog.Record, 1000)
			for i := range recs {
				recs[i] = textRec(i)
			}
			for i := 0; i < len(recs); i += 4 { // MaxBatchBytes is 1 KiB with 4 KiB segments
				if _, err := p.Append(bg, recs[i:i+4]); err != nil {
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
