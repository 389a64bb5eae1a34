package wire

// Names of the record headers an edge node writes into its log for an MQTT
// publish. They travel upstream as user headers (HeaderUser), except the
// MQTT topic, which also has its own header (HeaderMQTTTopic). The ingest
// hook (bridge/mqtt) writes them and the forwarder reads them; this is their
// one spelling.
const (
	// RecordHeaderMQTTTopic is the MQTT topic the device published to.
	RecordHeaderMQTTTopic = "mqtt.topic"
	// RecordHeaderMQTTClientID is the publishing client's id.
	RecordHeaderMQTTClientID = "mqtt.client_id"
	// RecordHeaderMQTTQoS is the publish QoS, "0", "1" or "2".
	RecordHeaderMQTTQoS = "mqtt.qos"
	// RecordHeaderMQTTContentType is the MQTT 5 Content Type property.
	RecordHeaderMQTTContentType = "mqtt.content_type"
	// RecordHeaderMQTTUserPrefix prefixes MQTT 5 user property names.
	RecordHeaderMQTTUserPrefix = "mqtt.user."

	// RecordHeaderSchemaID is the registry ID (decimal) of the schema the
	// payload was checked against at the edge; the forwarder sends it as
	// HeaderSchemaID (Record.SchemaID).
	RecordHeaderSchemaID = "schema.id"
	// RecordHeaderSchemaSubject and RecordHeaderSchemaVersion name the
	// subject and version (decimal) a dead-lettered payload failed.
	RecordHeaderSchemaSubject = "schema.subject"
	RecordHeaderSchemaVersion = "schema.version"
	// RecordHeaderSchemaError is why a dead-lettered payload failed its
	// check: the first violation, or why no check could be made.
	RecordHeaderSchemaError = "schema.error"
)
