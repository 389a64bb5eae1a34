package upstream

import (
	"context"
	"fmt"
)

// The origin pin: the store remembers the site and node a set of cursors
// forwarded under, so that a changed Site or Node is caught at start
// instead of sending every record again under a new origin (its subjects
// and Nats-Msg-Ids are new, so nothing would be deduplicated).
const originBucket = "upstream"

// originKey is the pin's key for the cursors named cursorName. The default
// cursors keep the key the node used before the forwarder owned its pin
// ("origin"), so existing data directories stay pinned.
func originKey(cursorName string) string {
	if cursorName == DefaultConfig().CursorName {
		return "origin"
	}
	return "origin/" + cursorName
}

// pinOrigin records site/node for cursorName on first use and refuses
// another origin afterwards.
func pinOrigin(ctx context.Context, st metaStore, cursorName, site, node string) error {
	origin := site + "/" + node
	key := originKey(cursorName)
	prev, ok, err := st.Get(ctx, originBucket, key)
	if err != nil {
		return fmt.Errorf("upstream: read origin: %w", err)
	}
	if ok && string(prev) != origin {
		return fmt.Errorf("%w: this data directory forwarded as %q, now configured as %q; "+
			"changing it would send every record again under a new origin. Restore the old names, or start with a new data directory",
			ErrOriginChanged, prev, origin)
	}
	if !ok {
		if err := st.Put(ctx, originBucket, key, []byte(origin)); err != nil {
			return fmt.Errorf("upstream: save origin: %w", err)
		}
	}
	return nil
}
