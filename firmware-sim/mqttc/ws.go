package mqttc

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// dialWebsocket opens an MQTT-over-WebSocket connection (subprotocol
// "mqtt", binary frames) and presents it as a byte stream.
func dialWebsocket(ctx context.Context, u *url.URL, tc *tls.Config) (net.Conn, error) {
	wu := *u
	if wu.Path == "" {
		wu.Path = "/mqtt"
	}
	d := websocket.Dialer{
		Subprotocols:     []string{"mqtt"},
		TLSClientConfig:  tc,
		HandshakeTimeout: 10 * time.Second,
	}
	ws, resp, err := d.DialContext(ctx, wu.String(), nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("websocket %s: %w", wu.String(), err)
	}
	return &wsConn{Conn: ws}, nil
}

// wsConn adapts a message-oriented websocket to net.Conn; MQTT packets may
// span frames and frames may hold several packets [MQTT-6.0.0-2].
type wsConn struct {
	*websocket.Conn
	r   io.Reader
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				continue
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
