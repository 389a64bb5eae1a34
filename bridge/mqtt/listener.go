package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/outpost-edge/outpost/internal/mochifix"
)

// Listener types.
const (
	TypeTCP = "tcp"
	TypeTLS = "tls"
	TypeWS  = "ws"
	TypeWSS = "wss"
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// ID names the listener (clients' Net.Listener, ACL anonymous rules).
	ID string
	// Type is tcp, tls, ws or wss.
	Type string
	// Address is host:port; port 0 picks a free one (see Address).
	Address string
	// TLS is required for tls and wss.
	TLS *tls.Config
	// Gate applies the connection limits; required.
	Gate *Gate
	// Server is the server the listener is added to. Close disconnects
	// the listener's clients through it with mochifix.CloseClients: the
	// function mochi passes can deadlock when a client leaves meanwhile
	// (mochi-mqtt/server#488). Nil uses mochi's.
	Server *mochi.Server
}

// Listener is a mochi listener with the Gate applied, which can stop
// accepting without closing its clients (for a graceful shutdown).
type Listener struct {
	cfg  ListenerConfig
	pool sync.Pool // read-ahead buffers (see readAheadBytes)
	ln   net.Listener
	http *http.Server
	log  *slog.Logger
	end  atomic.Bool
	wg   sync.WaitGroup
	// refusers are the goroutines answering refused connections
	// (refuse.go); Close waits for them, after setting refClosed so that
	// none starts during the wait.
	refusers  sync.WaitGroup
	refMu     sync.Mutex
	refClosed bool // refMu
}

var _ listeners.Listener = (*Listener)(nil)

// NewListener checks the config; the address is bound by Init.
func NewListener(cfg ListenerConfig) (*Listener, error) {
	switch cfg.Type {
	case TypeTCP, TypeWS:
	case TypeTLS, TypeWSS:
		if cfg.TLS == nil {
			return nil, fmt.Errorf("mqtt: listener %s: type %s needs a TLS config", cfg.ID, cfg.Type)
		}
	default:
		return nil, fmt.Errorf("mqtt: listener %s: type %q is not one of tcp, tls, ws, wss", cfg.ID, cfg.Type)
	}
	if cfg.Gate == nil {
		return nil, fmt.Errorf("mqtt: listener %s: Gate: required", cfg.ID)
	}
	l := &Listener{cfg: cfg}
	l.pool.New = func() any {
		b := make([]byte, readAheadBytes)
		return &b
	}
	return l, nil
}

// ID returns the listener id.
func (l *Listener) ID() string { return l.cfg.ID }

// Address returns the bound address once Init has run.
func (l *Listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.cfg.Address
}

// Protocol returns the listener type.
func (l *Listener) Protocol() string { return l.cfg.Type }

// Init binds the address.
func (l *Listener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.cfg.Address)
	if err != nil {
		return fmt.Errorf("mqtt: listener %s: %w", l.cfg.ID, err)
	}
	gl := &gatedListener{Listener: ln, g: l.cfg.Gate}
	if l.cfg.Type == TypeTCP || l.cfg.Type == TypeTLS {
		gl.refuse = l.refuse
	}
	l.ln = gl
	return nil
}

// Serve accepts connections until the listener is closed.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	switch l.cfg.Type {
	case TypeWS, TypeWSS:
		l.serveWS(establish)
		return
	}
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, typically: keep the listener alive
			// and try again, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt: accept failed; retrying", "listener", l.cfg.ID, "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.cfg.Type == TypeTLS {
			c = tls.Server(c, l.cfg.TLS)
		}
		fc := &clientConn{Conn: c, g: l.cfg.Gate, max: l.cfg.Gate.limits.MaxConnectBytes, pool: &l.pool}
		if fc.max <= 0 {
			fc.done = true
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer fc.Close()
			if err := establish(l.cfg.ID, fc); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("mqtt: connection ended", "listener", l.cfg.ID, "err", err)
			}
		}()
	}
}

func (l *Listener) serveWS(establish listeners.EstablishFn) {
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Devices and gateways are not browsers; an Origin check would only
		// block dashboards served from elsewhere.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if d := l.cfg.Gate.limits.ConnectTimeout; d > 0 {
			// net/http may have cleared the accept-time deadline.
			_ = ws.UnderlyingConn().SetDeadline(time.Now().Add(d))
		}
		fc := &clientConn{Conn: &wsConn{Conn: ws.UnderlyingConn(), c: ws}, g: l.cfg.Gate, max: l.cfg.Gate.limits.MaxConnectBytes, pool: &l.pool}
		if fc.max <= 0 {
			fc.done = true
		}
		if err := establish(l.cfg.ID, fc); err != nil && !errors.Is(err, io.EOF) {
			l.log.Debug("mqtt: connection ended", "listener", l.cfg.ID, "err", err)
		}
	})
	l.http = &http.Server{Handler: mux, ReadHeaderTimeout: l.cfg.Gate.limits.ConnectTimeout, TLSConfig: l.cfg.TLS}
	ln := l.ln
	if l.cfg.Type == TypeWSS {
		ln = tls.NewListener(ln, l.cfg.TLS)
	}
	err := l.http.Serve(ln)
	if err != nil && !l.end.Load() && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("mqtt: websocket listener failed", "listener", l.cfg.ID, "err", err)
	}
}

// StopAccepting closes the listening socket; connected clients stay.
func (l *Listener) StopAccepting() {
	l.end.Store(true)
	if l.ln != nil {
		l.ln.Close()
	}
}

// Close stops accepting and disconnects the listener's clients.
func (l *Listener) Close(closeClients listeners.CloseFn) {
	l.StopAccepting()
	if l.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.http.Shutdown(ctx)
		cancel()
	}
	if l.cfg.Server != nil {
		mochifix.CloseClients(l.cfg.Server, l.cfg.ID)
	} else {
		closeClients(l.cfg.ID)
	}
	l.refMu.Lock()
	l.refClosed = true
	l.refMu.Unlock()
	l.refusers.Wait() // each within refuseWait
}
