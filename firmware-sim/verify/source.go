package verify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
)

// Source delivers records until it is exhausted or ctx ends. Run returns
// nil when the source is exhausted (end of file, caught up, idle), and the
// first error emit returns.
type Source interface {
	Run(ctx context.Context, emit func(Record) error) error
}

// Run feeds every record of src into c; invalid payloads are counted, not
// fatal.
func Run(ctx context.Context, src Source, c *Checker) error {
	return src.Run(ctx, func(r Record) error {
		_ = c.AddRecord(r)
		return nil
	})
}

// FileSource reads JSON lines. A line is either a reading itself, or an
// object with the payload under "value" (base64, as the edge HTTP API
// returns) or "payload" (base64 string or an inline JSON object), with
// optional "device", "partition" and "offset" (and "topic") fields.
type FileSource struct {
	// R is the input.
	R io.Reader
	// Name labels errors (the file name).
	Name string
}

type lineRecord struct {
	Device    string          `json:"device"`
	Value     *string         `json:"value"`
	Payload   json.RawMessage `json:"payload"`
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    *int64          `json:"offset"`
}

// Run implements Source.
func (s FileSource) Run(ctx context.Context, emit func(Record) error) error {
	sc := bufio.NewScanner(s.R)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		if line%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		r := Record{Payload: bytes.Clone(b), Offset: -1}
		var lr lineRecord
		if json.Unmarshal(b, &lr) == nil && (lr.Value != nil || len(lr.Payload) > 0) {
			var err error
			r, err = lr.record()
			if err != nil {
				return fmt.Errorf("verify: %s:%d: %w", s.Name, line, err)
			}
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("verify: %s:%d: %w", s.Name, line, err)
	}
	return nil
}

func (lr *lineRecord) record() (Record, error) {
	r := Record{Device: lr.Device, Stream: lr.Topic, Partition: lr.Partition, Offset: -1}
	if lr.Offset != nil {
		r.Offset = *lr.Offset
	}
	switch {
	case lr.Value != nil:
		b, err := base64.StdEncoding.DecodeString(*lr.Value)
		if err != nil {
			return r, fmt.Errorf("value is not base64: %w", err)
		}
		r.Payload = b
	case lr.Payload[0] == '"':
		var s string
		if err := json.Unmarshal(lr.Payload, &s); err != nil {
			return r, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return r, fmt.Errorf("payload string is not base64: %w", err)
		}
		r.Payload = b
	default:
		r.Payload = bytes.Clone(lr.Payload)
	}
	return r, nil
}

// HTTPSource reads records from the edge HTTP API:
//
//	GET {BaseURL}/v1/topics/{Topic}/partitions/{p}/records?offset=N&limit=M
//	-> {"records":[{"offset":0,"value":"<base64>",...}],"next_offset":1}
//
// It reads each partition from Start until a page comes back empty, then
// (with Follow) keeps polling until no partition has grown for Idle.
type HTTPSource struct {
	// BaseURL is the API root, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Topic is the log topic.
	Topic string
	// Partitions to read.
	Partitions []int32
	// Start is the first offset to read in each partition.
	Start int64
	// Limit is the page size (default 1000).
	Limit int
	// Follow keeps polling after catching up, until Idle passes with no new records.
	Follow bool
	// Idle ends a Follow read (default 2s).
	Idle time.Duration
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token string
	// Client is the HTTP client (default: 30s timeout).
	Client *http.Client
}

type httpPage struct {
	Records []struct {
		Offset    int64   `json:"offset"`
		Value     *string `json:"value"`
		Key       string  `json:"key"`
		Partition *int32  `json:"partition"`
	} `json:"records"`
	NextOffset *int64 `json:"next_offset"`
}

// Run implements Source.
func (s HTTPSource) Run(ctx context.Context, emit func(Record) error) error {
	if s.Limit <= 0 {
		s.Limit = 1000
	}
	if s.Idle <= 0 {
		s.Idle = 2 * time.Second
	}
	hc := s.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	next := make(map[int32]int64, len(s.Partitions))
	for _, p := range s.Partitions {
		next[p] = s.Start
	}
	lastGrowth := time.Now()
	poll := 50 * time.Millisecond
	for {
		grew := false
		for _, p := range s.Partitions {
			for {
				n, err := s.page(ctx, hc, p, next, emit)
				if err != nil {
					return err
				}
				if n == 0 {
					break
				}
				grew = true
			}
		}
		if !s.Follow {
			return nil
		}
		if grew {
			lastGrowth = time.Now()
			poll = 50 * time.Millisecond
		} else if time.Since(lastGrowth) >= s.Idle {
			return nil
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, time.Second)
	}
}

func (s HTTPSource) page(ctx context.Context, hc *http.Client, p int32, next map[int32]int64, emit func(Record) error) (int, error) {
	u := fmt.Sprintf("%s/v1/topics/%s/partitions/%d/records?offset=%d&limit=%d",
		s.BaseURL, url.PathEscape(s.Topic), p, next[p], s.Limit)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("verify: GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("verify: GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(msg))
	}
	var pg httpPage
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&pg); err != nil {
		return 0, fmt.Errorf("verify: GET %s: decoding body: %w", u, err)
	}
	for _, r := range pg.Records {
		if r.Value == nil {
			return 0, fmt.Errorf("verify: GET %s: record at offset %d has no value", u, r.Offset)
		}
		b, err := base64.StdEncoding.DecodeString(*r.Value)
		if err != nil {
			return 0, fmt.Errorf("verify: GET %s: offset %d: value is not base64: %w", u, r.Offset, err)
		}
		if err := emit(Record{Payload: b, Stream: s.Topic, Partition: p, Offset: r.Offset}); err != nil {
			return 0, err
		}
	}
	switch {
	case pg.NextOffset != nil:
		if *pg.NextOffset < next[p] {
			return 0, fmt.Errorf("verify: GET %s: next_offset %d went backwards", u, *pg.NextOffset)
		}
		if len(pg.Records) > 0 && *pg.NextOffset == next[p] {
			return 0, fmt.Errorf("verify: GET %s: next_offset did not advance past %d records", u, len(pg.Records))
		}
		next[p] = *pg.NextOffset
	case len(pg.Records) > 0:
		next[p] = pg.Records[len(pg.Records)-1].Offset + 1
	}
	return len(pg.Records), nil
}

// MQTTSource subscribes to a broker and reads until Expect messages have
// arrived, or none has arrived for Idle, or ctx ends. It uses a persistent
// session and reconnects, so a dropped connection loses nothing the broker
// kept for it.
type MQTTSource struct {
	// Broker is the broker URL.
	Broker string
	// Filters are the topic filters (default sensors/#).
	Filters []string
	// QoS is the subscription QoS; use 1 or 2 to check delivery, since the
	// broker may drop QoS 0 messages to a slow subscriber.
	QoS byte
	// Version is 3 or 5 (default 5).
	Version int
	// ClientID defaults to firmware-sim-verify-<pid-free random>.
	ClientID string
	// Username and Password authenticate when set.
	Username, Password string
	// TLS is used for ssl:// and wss://.
	TLS *tls.Config
	// Expect stops after this many messages (0: no limit).
	Expect int64
	// Idle stops after this long without a message once subscribed
	// (default 5s).
	Idle time.Duration
	// Ready, if set, is called once the subscription is in place: the
	// moment a test or script may start publishing.
	Ready func()
}

// Run implements Source.
func (s MQTTSource) Run(ctx context.Context, emit func(Record) error) error {
	if len(s.Filters) == 0 {
		s.Filters = []string{"sensors/#"}
	}
	if s.Idle <= 0 {
		s.Idle = 5 * time.Second
	}
	if s.ClientID == "" {
		s.ClientID = "firmware-sim-verify-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	msgs := make(chan Record, 4096)
	cl := mqttc.New(mqttc.Config{
		Broker: s.Broker, ClientID: s.ClientID, Version: s.Version,
		Username: s.Username, Password: s.Password, TLS: s.TLS,
		KeepAlive: 30 * time.Second, SessionExpiry: 10 * time.Minute, CleanStart: false,
		MaxPacketBytes: 16 << 20,
	}, mqttc.Handlers{OnMessage: func(topic string, payload []byte, qos byte) {
		// Blocking here pushes back on the broker through TCP, which is
		// what a slow checker should do; it never drops a message.
		select {
		case msgs <- Record{Payload: payload, Stream: topic, Offset: -1}:
		case <-ctx.Done():
		}
	}})
	defer func() {
		cl.Close()
		s.dropSession()
	}()
	subscribed := false
	connect := func() error {
		var err error
		for attempt := 0; ; attempt++ {
			var ack mqttc.ConnAck
			ack, err = cl.Connect(ctx)
			if err == nil {
				if !ack.SessionPresent || !subscribed {
					if _, err = cl.Subscribe(ctx, s.QoS, s.Filters...); err == nil {
						if !subscribed && s.Ready != nil {
							s.Ready()
						}
						subscribed = true
						return nil
					}
				} else {
					return nil
				}
			}
			var ce *mqttc.ConnectError
			if ctx.Err() != nil || errors.As(err, &ce) || attempt == 20 {
				return fmt.Errorf("verify: %w", err)
			}
			t := time.NewTimer(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	if err := connect(); err != nil {
		return err
	}
	var got int64
	idle := time.NewTimer(s.Idle)
	defer idle.Stop()
	for {
		select {
		case r := <-msgs:
			got++
			r.Stream = "" // the topic is not a partition; don't offset-check
			if err := emit(r); err != nil {
				return err
			}
			if s.Expect > 0 && got >= s.Expect {
				return nil
			}
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(s.Idle)
		case <-idle.C:
			return nil
		case <-cl.Done():
			if err := connect(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// dropSession connects once more with a clean start and leaves normally, so
// the broker does not keep queueing for a checker that is gone (a 3.1.1
// persistent session would never expire).
func (s MQTTSource) dropSession() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := mqttc.New(mqttc.Config{Broker: s.Broker, ClientID: s.ClientID, Version: s.Version,
		Username: s.Username, Password: s.Password, TLS: s.TLS, CleanStart: true}, mqttc.Handlers{})
	defer cl.Close()
	if _, err := cl.Connect(ctx); err == nil {
		_ = cl.Disconnect()
	}
}
