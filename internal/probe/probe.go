package probe

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Ready asks http://addr/readyz and returns nil on 200 OK, or an error that
// carries the server's reason.
func Ready(addr, token string, timeout time.Duration) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%w (is it running, and is -http its HTTP address?)", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
