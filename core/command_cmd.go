package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
)

// runCommandSend is `core command send`: it sends a command through core's
// HTTP API and, with -wait, prints each status change until a final one.
func runCommandSend(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("core command send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	coreURL := fs.String("core", "http://127.0.0.1:8081", "core's HTTP `URL`")
	tokenFile := fs.String("token-file", "", "`file` with core's HTTP token (http.token_file), if it needs one")
	site := fs.String("site", "", "the device's `site` (required)")
	device := fs.String("device", "", "the `device` (MQTT client id, required)")
	topic := fs.String("topic", "", "MQTT `topic` the device receives the command on (required)")
	payload := fs.String("payload", "", "the payload, as `text`")
	qos := fs.Uint("qos", 1, "MQTT `QoS` of the delivery: 0 or 1")
	ttl := fs.Duration("ttl", 0, "time to live (0: core's commands.default_ttl)")
	id := fs.String("id", "", "command `id` (default: generated; the same id twice is one command)")
	wait := fs.Bool("wait", false, "print status changes until a final one (succeeded, failed, expired, rejected; delivered when the device gives no answer within -wait-for)")
	waitFor := fs.Duration("wait-for", time.Minute, "with -wait, give up after this `duration`")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage:\n  core command send -site S -device D -topic T -payload P [-ttl 10m] [-wait]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	for name, v := range map[string]string{"site": *site, "device": *device, "topic": *topic} {
		if v == "" {
			fmt.Fprintf(stderr, "core command send: -%s is required\n", name)
			return 2
		}
	}
	if *qos > 1 {
		fmt.Fprintln(stderr, "core command send: -qos: want 0 or 1")
		return 2
	}
	c := &apiClient{base: strings.TrimSuffix(*coreURL, "/"), hc: &http.Client{Timeout: 15 * time.Second}}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "core command send: -token-file: %v\n", err)
			return 1
		}
		c.token = strings.TrimSpace(string(b))
	}
	q := byte(*qos)
	req := wire.CommandRequest{Topic: *topic, PayloadText: payload, QoS: &q, ID: *id}
	if *ttl > 0 {
		req.TTL = ttl.String()
	}
	path := "/v1/sites/" + url.PathEscape(*site) + "/devices/" + url.PathEscape(*device) + "/commands"
	var sent struct {
		ID     string             `json:"id"`
		Status wire.CommandStatus `json:"status"`
		Reason string             `json:"reason"`
	}
	code, err := c.do(http.MethodPost, path, req, &sent)
	if err != nil {
		fmt.Fprintf(stderr, "core command send: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s %s%s\n", time.Now().UTC().Format(time.RFC3339Nano), sent.ID, sent.Status, reasonSuffix(sent.Reason))
	if code != http.StatusAccepted {
		return 1
	}
	if !*wait {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *waitFor)
	defer cancel()
	return c.follow(ctx, path+"/"+url.PathEscape(sent.ID), stdout, stderr)
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// follow polls the command and prints every history entry once.
func (c *apiClient) follow(ctx context.Context, path string, stdout, stderr io.Writer) int {
	printed := 1 // the queued entry was printed by send
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var st wire.CommandState
		if _, err := c.do(http.MethodGet, path, nil, &st); err != nil {
			fmt.Fprintf(stderr, "core command send: %v\n", err)
		} else {
			for ; printed < len(st.History); printed++ {
				h := st.History[printed]
				fmt.Fprintf(stdout, "%s %s %s%s\n", h.Time.UTC().Format(time.RFC3339Nano), st.ID, h.Status, reasonSuffix(h.Reason))
			}
			if st.Status.Final() {
				if len(st.Result) > 0 {
					fmt.Fprintf(stdout, "result: %s\n", st.Result)
				}
				if st.Status == wire.StatusSucceeded {
					return 0
				}
				return 1
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "core command send: -wait-for passed before a final status")
			return 3
		case <-tick.C:
		}
	}
}

type apiClient struct {
	base, token string
	hc          *http.Client
}

// do sends a JSON request and decodes a JSON answer; a non-2xx answer
// other than 409/413 (rejected, decoded into out) is an error.
func (c *apiClient) do(method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w (is core running? use -core URL)", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted, http.StatusConflict, http.StatusRequestEntityTooLarge:
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return resp.StatusCode, fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, e.Error)
	}
	return resp.StatusCode, fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
}
