package schema

import (
	"errors"
	"fmt"
)

// Errors of a sync session; each ends the session, which is retried with
// backoff while the link is up.
var (
	// ErrNoRegistry: the central cluster has no registry bucket (core not
	// started yet, or run with another prefix).
	ErrNoRegistry = errors.New("schema: the registry bucket does not exist in the central cluster")
	// errLinkChanged: the uplink went down or was replaced; the session
	// watches again on the next connection.
	errLinkChanged = errors.New("schema: uplink changed")
	// errWatchClosed: the server ended the watch.
	errWatchClosed = errors.New("schema: watch closed by the server")
)

func errUnexpectedKey(key string) error {
	return fmt.Errorf("schema: key %q is neither a subject nor a schema", key)
}
