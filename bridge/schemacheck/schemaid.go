package schemacheck

import (
	"mime"
	"strconv"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// PropertySchemaID is the MQTT 5 user property a device names the schema
// it wrote a payload with: the registry ID in decimal.
const PropertySchemaID = "schema-id"

// namedSchemaID returns the schema ID an MQTT 5 publish names: the user
// property schema-id, else a content type parameter schema-id (or schemaId,
// Confluent's spelling), e.g. "application/json; schema-id=7". found is
// false when the publish names none; err is set when it names one that is
// not a positive decimal.
func namedSchemaID(contentType string, props []packets.UserProperty) (id int, found bool, bad string) {
	for _, p := range props {
		if strings.EqualFold(p.Key, PropertySchemaID) {
			return parseID(p.Val)
		}
	}
	if contentType == "" || !strings.Contains(contentType, "=") {
		return 0, false, ""
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, false, "" // a content type we cannot read names no schema
	}
	for k, v := range params { // keys come lower-cased
		if k == "schema-id" || k == "schemaid" {
			return parseID(v)
		}
	}
	return 0, false, ""
}

func parseID(s string) (int, bool, string) {
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	if err != nil || id < 1 {
		return 0, true, "schema-id " + strconv.Quote(clip(s)) + " is not a positive decimal registry ID"
	}
	return int(id), true, ""
}
